"""Tests for flatprint.io.precomputed_skeletons and flatprint.io.units.

Independent oracles: struct-based encoders/decoders written here from the neuroglancer spec,
navis's precomputed writer and its shipped hemibrain skeletons, and conversions known on paper.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from flatprint.errors import FormatError
from flatprint.io import units
from flatprint.io.precomputed_skeletons import (
    read_precomputed_skeleton,
    read_skeleton_info,
    write_precomputed_skeleton,
    write_skeleton_info,
)
from flatprint.io.swc import from_navis, read_swc, to_navis, write_swc

navis = pytest.importorskip("navis")
ts = pytest.importorskip("tensorstore")


NAVIS_DATA = Path(navis.__file__).parent / "data"
HYPOTHESIS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


# ------------------------------------------------------------------------------------------
# Helpers written independently from the module under test
# ------------------------------------------------------------------------------------------


def decode_by_hand(data: bytes, n_float_attributes: int) -> tuple[list, list, list]:
    """Decode the spec's layout with struct: header, xyz float32s, edge uint32 pairs, then
    n_float_attributes float32-per-vertex attributes."""
    n_vertices, n_edges = struct.unpack_from("<II", data, 0)
    offset = 8
    flat = struct.unpack_from(f"<{3 * n_vertices}f", data, offset)
    offset += 12 * n_vertices
    edge_flat = struct.unpack_from(f"<{2 * n_edges}I", data, offset)
    offset += 8 * n_edges
    attributes = []
    for _ in range(n_float_attributes):
        attributes.append(list(struct.unpack_from(f"<{n_vertices}f", data, offset)))
        offset += 4 * n_vertices
    assert offset == len(data), "trailing or missing bytes"
    vertices = [flat[i : i + 3] for i in range(0, len(flat), 3)]
    edges = [edge_flat[i : i + 2] for i in range(0, len(edge_flat), 2)]
    return vertices, edges, attributes


def encode_by_hand(vertices, edges, radius=None) -> bytes:
    data = struct.pack("<II", len(vertices), len(edges))
    data += b"".join(struct.pack("<3f", *v) for v in vertices)
    data += b"".join(struct.pack("<2I", *e) for e in edges)
    if radius is not None:
        data += struct.pack(f"<{len(radius)}f", *radius)
    return data


def parent_rows(df: pd.DataFrame) -> list[int]:
    """Row index of each row's parent (-1 for roots), computed with a plain dict."""
    row_of = {node: row for row, node in enumerate(df["node_id"].tolist())}
    return [row_of[p] if p != -1 else -1 for p in df["parent_id"].tolist()]


def f32_scaled(values, factor) -> np.ndarray:
    return (np.asarray(values, dtype=np.float64) * factor).astype(np.float32)


@st.composite
def swc_tables(draw, max_nodes: int = 30, max_roots: int = 3):
    n = draw(st.integers(1, max_nodes))
    ids = draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n, unique=True))
    n_roots = draw(st.integers(1, min(max_roots, n)))
    parent_rank = [-1] * n_roots + [draw(st.integers(0, k - 1)) for k in range(n_roots, n)]
    order = draw(st.permutations(range(n)))
    value = st.floats(-1e5, 1e5, allow_nan=False, width=32)
    rows = []
    for rank in order:
        parent = ids[parent_rank[rank]] if parent_rank[rank] >= 0 else -1
        rows.append((ids[rank], 0, draw(value), draw(value), draw(value), abs(draw(value)), parent))
    return pd.DataFrame(rows, columns=["node_id", "label", "x", "y", "z", "radius", "parent_id"])


# ------------------------------------------------------------------------------------------
# Units
# ------------------------------------------------------------------------------------------


def test_unit_helpers():
    assert units.voxels_to_nm([1, 2.5]).tolist() == [8.0, 20.0]
    assert units.nm_to_voxels(800.0) == 100.0
    assert units.nm_to_um(2500.0) == 2.5 and units.um_to_nm(2.5) == 2500.0
    assert units.voxels_to_um(125.0) == 1.0 and units.um_to_voxels(1.0) == 125.0
    assert units.voxels_to_nm(3.0, voxel_size_nm=16) == 48.0


# ------------------------------------------------------------------------------------------
# Skeletons
# ------------------------------------------------------------------------------------------

SMALL_SWC = "# soma first\n10 1 1 2 3 4 -1\n20 0 5 6 7 0.5 10\n30 0 8 9 10 0.25 10\n40 0 1.5 0 0 1 30\n"


def test_encoding_matches_the_spec_layout(tmp_path):
    df = read_swc(SMALL_SWC)
    write_precomputed_skeleton(tmp_path, 12781, df)
    info = json.loads((tmp_path / "info").read_text())
    assert info == {
        "@type": "neuroglancer_skeletons",
        "transform": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0],
        "vertex_attributes": [{"id": "radius", "data_type": "float32", "num_components": 1}],
    }
    vertices, edges, (radius,) = decode_by_hand((tmp_path / "12781").read_bytes(), 1)
    assert vertices == [(8, 16, 24), (40, 48, 56), (64, 72, 80), (12, 0, 0)]  # nm
    assert edges == [(1, 0), (2, 0), (3, 2)]  # child -> parent
    assert radius == [32, 4, 2, 8]  # nm


@HYPOTHESIS
@given(df=swc_tables())
def test_random_tree_round_trip_through_precomputed(tmp_path_factory, df):
    directory = tmp_path_factory.mktemp("skeletons")
    write_precomputed_skeleton(directory, 7, df)
    back = read_precomputed_skeleton(directory, 7)

    # Vertex i is row i; node ids become i + 1 and the parent structure must be unchanged.
    assert back["node_id"].tolist() == list(range(1, len(df) + 1))
    assert parent_rows(back) == parent_rows(df)
    for column in ("x", "y", "z", "radius"):
        # float32 nm / 8 is exact, so the float32 value of the input comes back.
        assert np.array_equal(back[column].to_numpy(), df[column].to_numpy(np.float32)), column

    vertices, edges, (radius,) = decode_by_hand((directory / "7").read_bytes(), 1)
    assert np.array_equal(
        np.array(vertices, dtype=np.float32).reshape(-1, 3), f32_scaled(df[["x", "y", "z"]].to_numpy(), 8)
    )
    assert sorted(edges) == sorted((child, parent) for child, parent in enumerate(parent_rows(df)) if parent >= 0)
    assert np.array_equal(np.array(radius, dtype=np.float32), f32_scaled(df["radius"], 8))


@HYPOTHESIS
@given(df=swc_tables(max_roots=1))
def test_swc_text_survives_swc_precomputed_swc(tmp_path_factory, df):
    directory = tmp_path_factory.mktemp("skeletons")
    df = read_swc(write_swc(df))
    write_precomputed_skeleton(directory, 1, df)
    again = read_swc(write_swc(read_precomputed_skeleton(directory, 1)))
    assert parent_rows(again) == parent_rows(df)
    for column in ("x", "y", "z", "radius"):
        assert np.array_equal(again[column].to_numpy(np.float32), df[column].to_numpy(np.float32))


def test_release_style_minimal_info(tmp_path):
    """What the Male CNS exporter writes: only @type, vertices in nm, edges child->parent,
    no radius. A branching tree, so the direction is unambiguous."""
    (tmp_path / "info").write_text('{"@type": "neuroglancer_skeletons"}')
    vertices = [(800, 80, 8), (808, 80, 8), (816, 88, 8), (816, 72, 8)]
    # vertex 0 is the root; 1 under 0; 2 and 3 under 1 (a fork).
    (tmp_path / "12781").write_bytes(encode_by_hand(vertices, [(1, 0), (2, 1), (3, 1)]))
    df = read_precomputed_skeleton(tmp_path, 12781)
    assert df["parent_id"].tolist() == [-1, 1, 2, 2]
    assert df[["x", "y", "z"]].to_numpy().tolist() == [[100, 10, 1], [101, 10, 1], [102, 11, 1], [102, 9, 1]]
    assert df["radius"].tolist() == [0, 0, 0, 0]
    in_nm = read_precomputed_skeleton(tmp_path, 12781, swc_unit_nm=1, missing_radius=-1)
    assert in_nm["x"].tolist() == [800, 808, 816, 816] and in_nm["radius"].tolist() == [-1] * 4

    # The same fork written parent->child (navis's habit) is recognised too.
    (tmp_path / "5").write_bytes(encode_by_hand(vertices, [(0, 1), (1, 2), (1, 3)]))
    assert read_precomputed_skeleton(tmp_path, 5)["parent_id"].tolist() == [-1, 1, 2, 2]

    # A bare chain fits both directions; "auto" follows the FlyEM child->parent convention.
    (tmp_path / "6").write_bytes(encode_by_hand(vertices[:3], [(0, 1), (1, 2)]))
    assert read_precomputed_skeleton(tmp_path, 6)["parent_id"].tolist() == [2, 3, -1]
    assert read_precomputed_skeleton(tmp_path, 6, edge_direction="parent_child")["parent_id"].tolist() == [-1, 1, 2]

    # The path 0-1-2-3-4 with edges in no consistent direction (1 is first twice, 2 second
    # twice): rooted at the lowest vertex of each component.
    path_vertices = [(8 * i, 0, 0) for i in range(5)]
    (tmp_path / "8").write_bytes(encode_by_hand(path_vertices, [(1, 0), (1, 2), (3, 2), (3, 4)]))
    assert read_precomputed_skeleton(tmp_path, 8)["parent_id"].tolist() == [-1, 1, 2, 3, 4]
    with pytest.raises(FormatError, match="child_parent"):
        read_precomputed_skeleton(tmp_path, 8, edge_direction="child_parent")


def test_transform_is_row_major_3x4(tmp_path):
    # x_nm = -2*y + 100, y_nm = 2*x + 200, z_nm = 2*z + 300: a 90 degree turn, scale 2, shift.
    transform = [0, -2, 0, 100, 2, 0, 0, 200, 0, 0, 2, 300]
    info = {
        "@type": "neuroglancer_skeletons",
        "transform": transform,
        "vertex_attributes": [{"id": "radius", "data_type": "float32", "num_components": 1}],
    }
    (tmp_path / "info").write_text(json.dumps(info))
    (tmp_path / "1").write_bytes(encode_by_hand([(1, 2, 3), (4, 5, 6)], [(1, 0)], radius=[1.5, 3]))
    df = read_precomputed_skeleton(tmp_path, 1, swc_unit_nm=1)
    assert df[["x", "y", "z"]].to_numpy().tolist() == [[96, 202, 306], [90, 208, 312]]
    assert df["radius"].tolist() == [3, 6]

    # Writing into a directory with that info maps nm back to its stored units.
    write_precomputed_skeleton(tmp_path, 2, df, swc_unit_nm=1)
    vertices, edges, (radius,) = decode_by_hand((tmp_path / "2").read_bytes(), 1)
    assert np.allclose(vertices, [(1, 2, 3), (4, 5, 6)]) and radius == [1.5, 3] and edges == [(1, 0)]


@pytest.fixture(scope="module")
def example_neurons():
    """The five hemibrain skeletons shipped inside navis (8 nm voxels, no download)."""
    return list(navis.example_neurons())


def test_navis_written_skeletons_read_back(tmp_path, example_neurons):
    """navis writes stored units = 8 nm voxels (transform diag 8) and parent->child edges."""
    for neuron in example_neurons:
        navis.write_precomputed(neuron, tmp_path, radius=True)
        df = read_precomputed_skeleton(tmp_path, int(neuron.id))
        rebuilt = to_navis(df, units="8 nm")
        assert rebuilt.n_nodes == neuron.n_nodes
        assert rebuilt.n_trees == neuron.n_trees
        assert rebuilt.n_branches == neuron.n_branches
        assert rebuilt.cable_length == pytest.approx(neuron.cable_length, rel=1e-6)

        # Same edges, identified by the coordinates of child and parent.
        def edge_set(nodes):
            xyz = dict(zip(nodes["node_id"], map(tuple, nodes[["x", "y", "z"]].to_numpy(np.float32).tolist())))
            return sorted((xyz[c], xyz[p]) for c, p in zip(nodes["node_id"], nodes["parent_id"]) if p != -1)

        assert edge_set(rebuilt.nodes) == edge_set(neuron.nodes)


@pytest.mark.parametrize("index", range(5))
def test_navis_example_neurons_round_trip_through_precomputed(tmp_path, example_neurons, index):
    neuron = example_neurons[index]
    df = from_navis(neuron)
    write_precomputed_skeleton(tmp_path, int(neuron.id), df)
    back = read_precomputed_skeleton(tmp_path, int(neuron.id))
    rebuilt = to_navis(back, units="8 nm")
    assert rebuilt.n_nodes == neuron.n_nodes
    assert rebuilt.n_trees == neuron.n_trees
    assert rebuilt.n_leafs == neuron.n_leafs
    assert rebuilt.n_branches == neuron.n_branches
    assert rebuilt.cable_length == pytest.approx(neuron.cable_length, rel=1e-6)
    assert parent_rows(back) == parent_rows(df)
    assert np.array_equal(back["radius"].to_numpy(), neuron.nodes["radius"].to_numpy(np.float32))


@pytest.mark.parametrize(
    "case,message",
    [
        ("truncated", "bytes but its header"),
        ("extra-byte", "bytes but its header"),
        ("bad-edge", "refers to vertex 5"),
        ("cycle", "do not form a tree"),
        ("short", "fewer than the 8-byte header"),
    ],
)
def test_malformed_skeleton_files(tmp_path, case, message):
    write_skeleton_info(tmp_path, radius=False)
    good = encode_by_hand([(0, 0, 0), (1, 0, 0), (2, 0, 0)], [(1, 0), (2, 1)])
    data = {
        "truncated": good[:-1],
        "extra-byte": good + b"\0",
        "bad-edge": encode_by_hand([(0, 0, 0), (1, 0, 0)], [(1, 5)]),
        "cycle": encode_by_hand([(0, 0, 0), (1, 0, 0), (2, 0, 0)], [(0, 1), (1, 2), (2, 0)]),
        "short": b"\1\0\0",
    }[case]
    (tmp_path / "3").write_bytes(data)
    with pytest.raises(FormatError, match=message) as excinfo:
        read_precomputed_skeleton(tmp_path, 3)
    assert str(tmp_path / "3") in str(excinfo.value)


@pytest.mark.parametrize(
    "info,message",
    [
        ('{"@type": "neuroglancer_legacy_mesh"}', "must be"),
        ('{"@type": "neuroglancer_skeletons", "transform": [1, 0, 0]}', "12 finite numbers"),
        ('{"@type": "neuroglancer_skeletons", "sharding": {"@type": "neuroglancer_uint64_sharded_v1"}}', "sharded"),
        (
            '{"@type": "neuroglancer_skeletons",\n "vertex_attributes": '
            '[{"id": "radius", "data_type": "float64", "num_components": 1}]}',
            "data_type",
        ),
        ('{"@type": "neuroglancer_skeletons",\n\n "transform": [1, 0, 0,]}', "line 3: invalid JSON"),
    ],
)
def test_malformed_skeleton_info(tmp_path, info, message):
    (tmp_path / "info").write_text(info)
    with pytest.raises(FormatError, match=message) as excinfo:
        read_skeleton_info(tmp_path)
    assert str(tmp_path / "info") in str(excinfo.value)


# ------------------------------------------------------------------------------------------
