"""Tests for flatprint.io.obj, against trimesh's OBJ reader and navis's shipped meshes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flatprint.errors import FormatError
from flatprint.io.obj import read_obj, write_obj

navis = pytest.importorskip("navis")
trimesh = pytest.importorskip("trimesh")

NAVIS_DATA = Path(navis.__file__).parent / "data"


# ------------------------------------------------------------------------------------------
# OBJ meshes
# ------------------------------------------------------------------------------------------


def test_obj_round_trip_and_trimesh_agrees(tmp_path):
    rng = np.random.default_rng(5)
    vertices = rng.normal(size=(48, 3)) * 1000
    vertices[0] = (1.0, -0.0, 3.5)
    # Every vertex used (trimesh drops unreferenced ones), plus random extra faces.
    faces = np.concatenate([rng.permutation(48).reshape(16, 3), rng.integers(0, 48, size=(60, 3))])
    text = write_obj(vertices, faces, tmp_path / "roi.obj", comments=["FB"])
    assert text.split("\n")[:2] == ["# FB", "v 1 0 3.5"]
    v_back, f_back = read_obj(tmp_path / "roi.obj")
    assert np.array_equal(v_back, vertices) and np.array_equal(f_back, faces)
    mesh = trimesh.load(tmp_path / "roi.obj", file_type="obj", process=False)
    assert np.array_equal(mesh.vertices, vertices) and np.array_equal(mesh.faces, faces)


@pytest.mark.parametrize("name", ["lh.obj", "neuropil.obj"])
def test_read_real_roi_meshes_like_trimesh(name):
    path = NAVIS_DATA / "volumes" / name
    vertices, faces = read_obj(path)
    mesh = trimesh.load(path, file_type="obj", process=False)
    assert np.allclose(vertices, mesh.vertices, rtol=0, atol=1e-9)
    assert np.array_equal(faces, mesh.faces)


def test_obj_polygons_slashes_and_negative_indices():
    text = "o roi\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvn 0 0 1\nf 1//1 2//1 3//1 4//1\nf -4/1/1 -2/1/1 -1/1/1\n"
    vertices, faces = read_obj(text)
    assert len(vertices) == 4
    assert faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 2, 3]]


@pytest.mark.parametrize(
    "text,line,message",
    [
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\n\nf 1 2 4\n", 5, "does not exist"),
        ("v 0 0 0\nv 1 x 0\n", 2, "not numbers"),
        ("v 0 0 0\nf 1 2\n", 2, "at least 3"),
        ("v 0 0 0\nv 0 0 1\nv 0 1 1\nf 0 1 2\n", 4, "index 0"),
    ],
)
def test_malformed_obj(text, line, message):
    with pytest.raises(FormatError, match=message) as excinfo:
        read_obj(text)
    assert excinfo.value.line == line and str(excinfo.value).startswith(f"line {line}:")
