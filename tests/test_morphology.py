"""Tests for flatprint.synth.morphology: skeletons, ROI volumes and meshes, body segmentation.

Independent oracles: the release feathers read with pandas (tests/oracle.py), neuprint-python's
SWC parser (strict: 7 single-space fields), navis, tensorstore (volumes), trimesh (meshes) and the
ROI boxes of ``rois.hierarchy()`` (the synthetic ground truth).
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.parse
from pathlib import Path

import numpy as np
import oracle
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from flatprint.io.obj import read_obj
from flatprint.io.precomputed_skeletons import decode_skeleton, read_precomputed_skeleton
from flatprint.synth import rois as roimod
from flatprint.synth.morphology import (
    CLUSTER_VX,
    SOMA_BALL_NM,
    box_surface_mesh,
    write_morphology,
    write_segmentation_volume,
)

ts = pytest.importorskip("tensorstore")
trimesh = pytest.importorskip("trimesh")
navis = pytest.importorskip("navis")
neuprint_skeleton = pytest.importorskip("neuprint.skeleton")

_BUILT: dict[str, tuple[Path, dict]] = {}


def build_morphology_release(tmp_path_factory, release_factory) -> tuple[Path, dict]:
    """A copy of the session's small release with write_morphology run on it (built once per
    session; tests/test_volumes.py shares it)."""
    if "release" not in _BUILT:
        target = tmp_path_factory.mktemp("morphology") / "release"
        shutil.copytree(release_factory(0), target)
        summary = write_morphology(target, progress=False)
        _BUILT["release"] = (target, summary)
    return _BUILT["release"]


@pytest.fixture(scope="module")
def morph(tmp_path_factory, release_factory):
    return build_morphology_release(tmp_path_factory, release_factory)


@pytest.fixture(scope="module")
def release(morph) -> Path:
    return morph[0]


@pytest.fixture(scope="module")
def neurons(release) -> pd.DataFrame:
    """Oracle: annotated neurons (status Traced/Anchor or typed, not Glia/Unimportant)."""
    ann = oracle.load(release, "annotations")
    keep = (ann["status"].isin(["Traced", "Anchor"]) | ann["type"].notna()) & ~ann["status"].isin(
        ["Glia", "Unimportant"]
    )
    return ann.loc[keep, ["bodyId", "type", "status", "somaLocation"]].reset_index(drop=True)


@pytest.fixture(scope="module")
def skeletons(release, neurons) -> pd.DataFrame:
    """All SWC files parsed with neuprint-python's parser, with a bodyId column."""
    frames = []
    for body in neurons["bodyId"]:
        df = neuprint_skeleton.skeleton_swc_to_df(str(release / "skeletons" / "skeletons-swc" / f"{body}.swc"))
        df["bodyId"] = body
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def test_layout_and_index(release, neurons, morph):
    index = json.loads((release / "skeletons" / "index.json").read_text())
    assert sorted(index["bodyIds"]) == sorted(neurons["bodyId"].tolist())
    assert morph[1]["skeletons"] == len(neurons)
    assert 12781 in index["bodyIds"] and 556329 in index["bodyIds"]
    swc = {p.name for p in (release / "skeletons" / "skeletons-swc").iterdir()}
    assert swc == {f"{b}.swc" for b in neurons["bodyId"]}
    pre_dir = release / "skeletons" / "skeletons-precomputed"
    assert json.loads((pre_dir / "info").read_text()) == {"@type": "neuroglancer_skeletons"}
    assert {p.name for p in pre_dir.iterdir()} == {str(b) for b in neurons["bodyId"]} | {"info"}
    for name in ("fullbrain-roi-v4", "malecns-vnc-neuropil-roi-v0"):
        info = json.loads((release / "rois" / name / "info").read_text())
        assert info["type"] == "segmentation" and info["data_type"] == "uint64"
        assert [s["resolution"] for s in info["scales"]] == [[256.0, 256.0, 256.0]]
    seg = json.loads((release / "segmentation" / "info").read_text())
    assert [s["resolution"][0] for s in seg["scales"]] == [128.0, 256.0]
    assert seg["skeletons"] == "../skeletons/skeletons-precomputed"


def test_swc_files_are_strict_seven_field_trees(release, neurons):
    pattern = re.compile(r"^-?\d+ -?\d+ (-?[\d.e+-]+ ){4}-?\d+$")
    for body in neurons["bodyId"]:
        text = (release / "skeletons" / "skeletons-swc" / f"{body}.swc").read_text()
        assert text.endswith("\n")
        rows = [line for line in text.split("\n")[:-1] if "#" not in line]
        assert rows, body
        for line in rows:
            assert pattern.match(line), (body, line)
            assert len(line.split(" ")) == 7
        table = np.array([line.split(" ") for line in rows], dtype=float)
        node, parent = table[:, 0].astype(int), table[:, 6].astype(int)
        assert (node == np.arange(1, len(node) + 1)).all()
        assert parent[0] == -1 and (parent[1:] >= 1).all() and (parent[1:] < node[1:]).all()


def test_every_synapse_is_near_its_skeleton(release, neurons, skeletons):
    """Each synapse of a neuron lies within sqrt(3) * CLUSTER_VX (3.5 µm) of one of its nodes."""
    points = oracle.load(release, "syn-points")
    points = points[points["body"].isin(neurons["bodyId"])]
    assert len(points) > 10_000
    order = {b: i for i, b in enumerate(neurons["bodyId"])}
    shift = 1e6  # separates neurons in one KD-tree (the volume is ~8,000 voxels wide)
    node_xyz = skeletons[["x", "y", "z"]].to_numpy(float, copy=True)
    node_xyz[:, 0] += skeletons["bodyId"].map(order).to_numpy() * shift
    syn_xyz = points[["x", "y", "z"]].to_numpy(float, copy=True)
    syn_xyz[:, 0] += points["body"].map(order).to_numpy() * shift
    dist, _ = cKDTree(node_xyz).query(syn_xyz)
    limit = np.sqrt(3) * CLUSTER_VX + 1
    assert dist.max() <= limit, dist.max()
    assert np.median(dist) < CLUSTER_VX  # most synapses are much closer
    # Every neuron's skeleton spans its synapses (more than one node unless it has one point).
    sizes = skeletons.groupby("bodyId").size()
    assert (sizes >= 2).mean() > 0.95


def test_soma_root_and_radius(release, neurons, skeletons):
    first = skeletons.groupby("bodyId").head(1).set_index("bodyId")
    assert (first["link"] == -1).all() and (first["rowId"] == 1).all()
    with_soma = neurons[neurons["somaLocation"].notna()]
    assert len(with_soma) > 0.8 * len(neurons)
    soma = np.stack(with_soma["somaLocation"].to_numpy()).astype(float)
    root = first.loc[with_soma["bodyId"], ["x", "y", "z"]].to_numpy(float)
    assert np.abs(root - soma).max() <= 0.05
    # Radii: the soma is the thickest node; neurites thin out away from it.
    max_radius = skeletons.groupby("bodyId")["radius"].max()
    assert (first.loc[with_soma["bodyId"], "radius"] == max_radius.loc[with_soma["bodyId"]]).all()
    root_xyz = first.loc[skeletons["bodyId"], ["x", "y", "z"]].to_numpy(float)
    dist = np.linalg.norm(skeletons[["x", "y", "z"]].to_numpy(float) - root_xyz, axis=1)
    neurite = skeletons["link"].to_numpy() != -1
    near = skeletons["radius"].to_numpy()[neurite & (dist < 500)]
    far = skeletons["radius"].to_numpy()[neurite & (dist > 2500)]
    assert near.mean() > far.mean()
    # Edges are short (split into pieces of at most 2 µm).
    parent_xyz = skeletons[["x", "y", "z"]].to_numpy(float)
    start = np.arange(len(skeletons)) - skeletons["rowId"].to_numpy() + 1
    child = np.flatnonzero(skeletons["link"].to_numpy() > 0)
    par = start[child] + skeletons["link"].to_numpy()[child] - 1
    edge = np.linalg.norm(parent_xyz[child] - parent_xyz[par], axis=1)
    assert edge.max() <= 250 + 1


def test_navis_reads_the_swc_files(release, neurons):
    for body in neurons["bodyId"].iloc[:15]:
        path = release / "skeletons" / "skeletons-swc" / f"{body}.swc"
        neuron = navis.read_swc(str(path), units="8 nm")
        rows = [line for line in path.read_text().splitlines() if not line.startswith("#")]
        assert neuron.n_nodes == len(rows)
        assert neuron.n_trees == 1
        assert neuron.soma is not None or neuron.nodes["label"].eq(1).sum() == 0


def test_precomputed_skeletons_match_swc(release, neurons, skeletons):
    pre_dir = release / "skeletons" / "skeletons-precomputed"
    by_body = dict(tuple(skeletons.groupby("bodyId")))
    for body in neurons["bodyId"].iloc[::7]:
        swc = by_body[body]
        raw = decode_skeleton((pre_dir / str(body)).read_bytes(), ())
        # vertices in nm = SWC (8 nm voxels) * 8; edges child -> parent, no radius attribute
        np.testing.assert_allclose(raw.vertices, swc[["x", "y", "z"]].to_numpy() * 8, rtol=1e-6, atol=1e-2)
        assert len(raw.edges) == len(swc) - 1
        child, parent = raw.edges[:, 0], raw.edges[:, 1]
        np.testing.assert_array_equal(parent + 1, swc["link"].to_numpy()[child])
        assert raw.radius is None
        back = read_precomputed_skeleton(pre_dir, body)
        np.testing.assert_allclose(back[["x", "y", "z"]].to_numpy(), swc[["x", "y", "z"]].to_numpy(), atol=1e-3)
        np.testing.assert_array_equal(back["parent_id"].to_numpy(), swc["link"].to_numpy())


def test_roi_volumes_hold_the_primary_labels(release):
    h = roimod.hierarchy()
    primary, _ = roimod.label_volumes()
    brain = {"CentralBrain", "Optic(L)", "Optic(R)", "CV"}
    for name, majors in (("fullbrain-roi-v4", brain), ("malecns-vnc-neuropil-roi-v0", {"VNC"})):
        store = ts.open(
            {"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": str(release / "rois" / name)}},
            read=True,
        ).result()
        data = store[..., 0].read().result()
        labels = [i + 1 for i, roi in enumerate(h.primary) if h.major_of_primary[roi] in majors]
        expected = np.where(np.isin(primary, labels), primary, 0).astype(np.uint64)
        np.testing.assert_array_equal(data, expected)
        props = json.loads((release / "rois" / name / "properties" / "info").read_text())
        inline = props["inline"]
        assert [int(i) for i in inline["ids"]] == labels
        assert inline["properties"][0]["values"] == [h.primary[i - 1] for i in labels]


@pytest.mark.parametrize("encoding", ["raw", "compressed_segmentation"])
def test_written_volume_reads_back_identically_with_tensorstore(tmp_path, encoding):
    rng = np.random.default_rng(5)
    fine = rng.integers(0, 4, size=(70, 50, 33)).astype(np.uint64) * np.uint64(2**40 + 12345)
    fine[3:9, 4:40, 1:30] = 7
    coarse = fine[::2, ::2, ::2].copy()
    info = write_segmentation_volume(
        tmp_path / "vol",
        [(fine, 8.0), (coarse, 16.0)],
        encoding=encoding,
        extra_info={"note": "x"},
        chunk_size=(32, 32, 32),
    )
    assert info["note"] == "x" and info["scales"][0]["encoding"] == encoding
    for index, expected in enumerate((fine, coarse)):
        store = ts.open(
            {
                "driver": "neuroglancer_precomputed",
                "scale_index": index,
                "kvstore": {"driver": "file", "path": str(tmp_path / "vol")},
            },
            read=True,
        ).result()
        assert store.domain.shape[:3] == expected.shape
        np.testing.assert_array_equal(store[..., 0].read().result(), expected)


def test_segmentation_somas_and_background(release, neurons, skeletons):
    store = ts.open(
        {"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": str(release / "segmentation")}},
        read=True,
    ).result()
    seg = store[..., 0].read().result()
    per = 128 // 8
    xyz = skeletons[["x", "y", "z"]].to_numpy(float)
    idx = np.floor(xyz / per).astype(int)
    at_nodes = seg[idx[:, 0], idx[:, 1], idx[:, 2]]
    # Every node's voxel is painted with some neuron's id; most with its own.
    assert np.isin(at_nodes, neurons["bodyId"].to_numpy().astype(np.uint64)).all()
    assert (at_nodes == skeletons["bodyId"].to_numpy().astype(np.uint64)).mean() > 0.5
    # A soma with no other soma within two soma radii owns its voxel.
    with_soma = neurons[neurons["somaLocation"].notna()]
    soma = np.stack(with_soma["somaLocation"].to_numpy()).astype(float)
    dist, _ = cKDTree(soma).query(soma, k=2)
    alone = dist[:, 1] * 8 > 2 * SOMA_BALL_NM + 2 * 128 * np.sqrt(3)
    assert alone.sum() > 10
    s_idx = np.floor(soma[alone] / per).astype(int)
    np.testing.assert_array_equal(
        seg[s_idx[:, 0], s_idx[:, 1], s_idx[:, 2]], with_soma["bodyId"].to_numpy()[alone].astype(np.uint64)
    )
    # Far from every skeleton (more than half an edge + a voxel + a soma ball) there is no body.
    rng = np.random.default_rng(1)
    probe = rng.random((20_000, 3)) * np.array(roimod.ROI_SHAPE_XYZ) * 32
    far, _ = cKDTree(xyz).query(probe)
    empty = far * 8 > max(1000, SOMA_BALL_NM) + 128 * np.sqrt(3) + 50
    assert empty.sum() > 1000
    p_idx = np.floor(probe[empty] / per).astype(int)
    assert (seg[p_idx[:, 0], p_idx[:, 1], p_idx[:, 2]] == 0).all()


def test_roi_meshes(release):
    h = roimod.hierarchy()
    mesh_dir = release / "rois" / "meshes"
    index = json.loads((mesh_dir / "index.json").read_text(encoding="utf-8"))
    assert set(index) == set(h.all_rois())
    assert index["a'L(R)"] == "a%27L%28R%29.obj"
    for roi, file_name in index.items():
        assert urllib.parse.unquote(file_name[:-4]) == roi
        assert (mesh_dir / file_name).exists()
    for roi in ["a'L(R)", "AL(L)", "LegNp(T1)(R)", "NTct(UTct-T1)(L)", "GNG", "CV(R)"] + list(h.major):
        mesh = trimesh.load(mesh_dir / index[roi], file_type="obj", force="mesh")
        box = h.boxes.get(roi) or h.major_boxes[roi]
        expected = np.array([box[0::2], box[1::2]], dtype=float) * 256
        np.testing.assert_allclose(mesh.bounds, expected)
        assert mesh.is_watertight and mesh.volume > 0
        np.testing.assert_allclose(mesh.volume, np.prod(expected[1] - expected[0]))
        vertices, faces = read_obj(mesh_dir / index[roi])
        assert len(faces) == 12
    # A grouping ROI is the union of its primary ROIs' boxes.
    mb = trimesh.load(mesh_dir / index["MB(R)"], file_type="obj", force="mesh")
    parts = [h.boxes[r] for r in h.children["MB(R)"]]
    volume = sum((b[1] - b[0]) * (b[3] - b[2]) * (b[5] - b[4]) for b in parts) * 256**3
    np.testing.assert_allclose(mb.volume, volume)


def test_box_surface_mesh_general_shapes():
    mask = np.zeros((7, 8, 9), bool)
    mask[1:6, 2:7, 1:8] = True
    mask[1:3, 2:4, 4:8] = False  # a notch: not a box any more
    vertices, faces = box_surface_mesh(mask, voxel_nm=2.0, offset=(10, 0, 0))
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.volume == pytest.approx(mask.sum() * 8.0)
    np.testing.assert_allclose(mesh.bounds, [[22, 4, 2], [32, 14, 16]])
    empty_v, empty_f = box_surface_mesh(np.zeros((3, 3, 3), bool))
    assert len(empty_v) == 0 and len(empty_f) == 0


def test_batches_paint_the_same_segmentation(release):
    """Painting neurons in several batches gives the volume one batch gives (same tie rules)."""
    from flatprint.synth import morphology as M

    neurons = M._neurons(release).iloc[:150].reset_index(drop=True)
    syn_neuron, syn_xyz = M._synapses(release, neurons["bodyId"].to_numpy())
    nodes = M.build_skeletons(neurons, syn_neuron, syn_xyz)
    bodies = neurons["bodyId"].to_numpy()
    whole = M._BodyPainter(bodies)
    whole.add(nodes)
    parts = M._BodyPainter(bodies)
    for lo in range(0, 150, 50):
        parts.add(nodes[(nodes["neuron"] >= lo) & (nodes["neuron"] < lo + 50)])
    one = whole.volumes()
    for fine_or_coarse, several in zip(one, parts.volumes()):
        np.testing.assert_array_equal(fine_or_coarse, several)
    assert one[0].any() and one[1].any()
