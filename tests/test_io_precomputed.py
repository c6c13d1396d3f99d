"""Tests for flatprint.io.precomputed: skeletons, volumes, unit helpers, OBJ meshes.

Independent oracles: struct-based encoders/decoders written here from the neuroglancer spec,
tensorstore's neuroglancer_precomputed driver for volumes, navis's precomputed writer and its
shipped hemibrain skeletons, and trimesh for OBJ.
"""

from __future__ import annotations

import gzip
import json
import math
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flatprint.errors import FormatError
from flatprint.io import precomputed as pc
from flatprint.io.swc import from_navis, read_swc, to_navis, write_swc

navis = pytest.importorskip("navis")
ts = pytest.importorskip("tensorstore")
trimesh = pytest.importorskip("trimesh")

NAVIS_DATA = Path(navis.__file__).parent / "data"
HYPOTHESIS = settings(max_examples=40, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


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
    vertices = [flat[i:i + 3] for i in range(0, len(flat), 3)]
    edges = [edge_flat[i:i + 2] for i in range(0, len(edge_flat), 2)]
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
        rows.append((ids[rank], 0, draw(value), draw(value), draw(value),
                     abs(draw(value)), parent))
    return pd.DataFrame(rows, columns=["node_id", "label", "x", "y", "z", "radius", "parent_id"])


# ------------------------------------------------------------------------------------------
# Units
# ------------------------------------------------------------------------------------------

def test_unit_helpers():
    assert pc.voxels_to_nm([1, 2.5]).tolist() == [8.0, 20.0]
    assert pc.nm_to_voxels(800.0) == 100.0
    assert pc.nm_to_um(2500.0) == 2.5 and pc.um_to_nm(2.5) == 2500.0
    assert pc.voxels_to_um(125.0) == 1.0 and pc.um_to_voxels(1.0) == 125.0
    assert pc.voxels_to_nm(3.0, voxel_size_nm=16) == 48.0


# ------------------------------------------------------------------------------------------
# Skeletons
# ------------------------------------------------------------------------------------------

SMALL_SWC = "# soma first\n10 1 1 2 3 4 -1\n20 0 5 6 7 0.5 10\n30 0 8 9 10 0.25 10\n40 0 1.5 0 0 1 30\n"


def test_encoding_matches_the_spec_layout(tmp_path):
    df = read_swc(SMALL_SWC)
    pc.write_precomputed_skeleton(tmp_path, 12781, df)
    info = json.loads((tmp_path / "info").read_text())
    assert info == {
        "@type": "neuroglancer_skeletons",
        "transform": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0],
        "vertex_attributes": [{"id": "radius", "data_type": "float32", "num_components": 1}],
    }
    vertices, edges, (radius,) = decode_by_hand((tmp_path / "12781").read_bytes(), 1)
    assert vertices == [(8, 16, 24), (40, 48, 56), (64, 72, 80), (12, 0, 0)]  # nm
    assert edges == [(1, 0), (2, 0), (3, 2)]                                   # child -> parent
    assert radius == [32, 4, 2, 8]                                            # nm


@HYPOTHESIS
@given(df=swc_tables())
def test_random_tree_round_trip_through_precomputed(tmp_path_factory, df):
    directory = tmp_path_factory.mktemp("skeletons")
    pc.write_precomputed_skeleton(directory, 7, df)
    back = pc.read_precomputed_skeleton(directory, 7)

    # Vertex i is row i; node ids become i + 1 and the parent structure must be unchanged.
    assert back["node_id"].tolist() == list(range(1, len(df) + 1))
    assert parent_rows(back) == parent_rows(df)
    for column in ("x", "y", "z", "radius"):
        # float32 nm / 8 is exact, so the float32 value of the input comes back.
        assert np.array_equal(back[column].to_numpy(), df[column].to_numpy(np.float32)), column

    vertices, edges, (radius,) = decode_by_hand((directory / "7").read_bytes(), 1)
    assert np.array_equal(np.array(vertices, dtype=np.float32).reshape(-1, 3),
                          f32_scaled(df[["x", "y", "z"]].to_numpy(), 8))
    assert sorted(edges) == sorted((child, parent) for child, parent in enumerate(parent_rows(df)) if parent >= 0)
    assert np.array_equal(np.array(radius, dtype=np.float32), f32_scaled(df["radius"], 8))


@HYPOTHESIS
@given(df=swc_tables(max_roots=1))
def test_swc_text_survives_swc_precomputed_swc(tmp_path_factory, df):
    directory = tmp_path_factory.mktemp("skeletons")
    df = read_swc(write_swc(df))
    pc.write_precomputed_skeleton(directory, 1, df)
    again = read_swc(write_swc(pc.read_precomputed_skeleton(directory, 1)))
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
    df = pc.read_precomputed_skeleton(tmp_path, 12781)
    assert df["parent_id"].tolist() == [-1, 1, 2, 2]
    assert df[["x", "y", "z"]].to_numpy().tolist() == [[100, 10, 1], [101, 10, 1], [102, 11, 1], [102, 9, 1]]
    assert df["radius"].tolist() == [0, 0, 0, 0]
    in_nm = pc.read_precomputed_skeleton(tmp_path, 12781, swc_unit_nm=1, missing_radius=-1)
    assert in_nm["x"].tolist() == [800, 808, 816, 816] and in_nm["radius"].tolist() == [-1] * 4

    # The same fork written parent->child (navis's habit) is recognised too.
    (tmp_path / "5").write_bytes(encode_by_hand(vertices, [(0, 1), (1, 2), (1, 3)]))
    assert pc.read_precomputed_skeleton(tmp_path, 5)["parent_id"].tolist() == [-1, 1, 2, 2]

    # A bare chain fits both directions; "auto" follows the FlyEM child->parent convention.
    (tmp_path / "6").write_bytes(encode_by_hand(vertices[:3], [(0, 1), (1, 2)]))
    assert pc.read_precomputed_skeleton(tmp_path, 6)["parent_id"].tolist() == [2, 3, -1]
    assert pc.read_precomputed_skeleton(tmp_path, 6, edge_direction="parent_child")["parent_id"].tolist() == [-1, 1, 2]

    # The path 0-1-2-3-4 with edges in no consistent direction (1 is first twice, 2 second
    # twice): rooted at the lowest vertex of each component.
    path_vertices = [(8 * i, 0, 0) for i in range(5)]
    (tmp_path / "8").write_bytes(encode_by_hand(path_vertices, [(1, 0), (1, 2), (3, 2), (3, 4)]))
    assert pc.read_precomputed_skeleton(tmp_path, 8)["parent_id"].tolist() == [-1, 1, 2, 3, 4]
    with pytest.raises(FormatError, match="child_parent"):
        pc.read_precomputed_skeleton(tmp_path, 8, edge_direction="child_parent")


def test_transform_is_row_major_3x4(tmp_path):
    # x_nm = -2*y + 100, y_nm = 2*x + 200, z_nm = 2*z + 300: a 90 degree turn, scale 2, shift.
    transform = [0, -2, 0, 100, 2, 0, 0, 200, 0, 0, 2, 300]
    info = {"@type": "neuroglancer_skeletons", "transform": transform,
            "vertex_attributes": [{"id": "radius", "data_type": "float32", "num_components": 1}]}
    (tmp_path / "info").write_text(json.dumps(info))
    (tmp_path / "1").write_bytes(encode_by_hand([(1, 2, 3), (4, 5, 6)], [(1, 0)], radius=[1.5, 3]))
    df = pc.read_precomputed_skeleton(tmp_path, 1, swc_unit_nm=1)
    assert df[["x", "y", "z"]].to_numpy().tolist() == [[96, 202, 306], [90, 208, 312]]
    assert df["radius"].tolist() == [3, 6]

    # Writing into a directory with that info maps nm back to its stored units.
    pc.write_precomputed_skeleton(tmp_path, 2, df, swc_unit_nm=1)
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
        df = pc.read_precomputed_skeleton(tmp_path, int(neuron.id))
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
    pc.write_precomputed_skeleton(tmp_path, int(neuron.id), df)
    back = pc.read_precomputed_skeleton(tmp_path, int(neuron.id))
    rebuilt = to_navis(back, units="8 nm")
    assert rebuilt.n_nodes == neuron.n_nodes
    assert rebuilt.n_trees == neuron.n_trees
    assert rebuilt.n_leafs == neuron.n_leafs
    assert rebuilt.n_branches == neuron.n_branches
    assert rebuilt.cable_length == pytest.approx(neuron.cable_length, rel=1e-6)
    assert parent_rows(back) == parent_rows(df)
    assert np.array_equal(back["radius"].to_numpy(), neuron.nodes["radius"].to_numpy(np.float32))


@pytest.mark.parametrize("case,message", [
    ("truncated", "bytes but its header"),
    ("extra-byte", "bytes but its header"),
    ("bad-edge", "refers to vertex 5"),
    ("cycle", "do not form a tree"),
    ("short", "fewer than the 8-byte header"),
])
def test_malformed_skeleton_files(tmp_path, case, message):
    pc.write_skeleton_info(tmp_path, radius=False)
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
        pc.read_precomputed_skeleton(tmp_path, 3)
    assert str(tmp_path / "3") in str(excinfo.value)


@pytest.mark.parametrize("info,message", [
    ('{"@type": "neuroglancer_legacy_mesh"}', "must be"),
    ('{"@type": "neuroglancer_skeletons", "transform": [1, 0, 0]}', "12 finite numbers"),
    ('{"@type": "neuroglancer_skeletons", "sharding": {"@type": "neuroglancer_uint64_sharded_v1"}}', "sharded"),
    ('{"@type": "neuroglancer_skeletons",\n "vertex_attributes": [{"id": "radius", "data_type": "float64", "num_components": 1}]}', "data_type"),
    ('{"@type": "neuroglancer_skeletons",\n\n "transform": [1, 0, 0,]}', "line 3: invalid JSON"),
])
def test_malformed_skeleton_info(tmp_path, info, message):
    (tmp_path / "info").write_text(info)
    with pytest.raises(FormatError, match=message) as excinfo:
        pc.read_skeleton_info(tmp_path)
    assert str(tmp_path / "info") in str(excinfo.value)


# ------------------------------------------------------------------------------------------
# Volumes, checked against tensorstore
# ------------------------------------------------------------------------------------------

def ts_open(path: Path, scale_index: int = 0):
    return ts.open({"driver": "neuroglancer_precomputed",
                    "kvstore": {"driver": "file", "path": str(path)},
                    "scale_index": scale_index}, read=True).result()


def random_labels(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Few distinct labels, some above 2**32 to catch 32-bit truncation.
    palette = np.array([0, 1, 12781, 556329, 2**32 + 5, 2**63 + 11], dtype=np.uint64)
    return palette[rng.integers(0, len(palette), size=shape)]


def test_volume_reads_back_identically_with_tensorstore(tmp_path):
    labels = random_labels((37, 29, 21))
    offset = (3, 5, 7)
    info = pc.write_precomputed_volume(tmp_path / "seg", labels, (8, 8, 8), voxel_offset=offset,
                                       chunk_size=(16, 16, 8), downsample_factors=[(2, 2, 2), (4, 4, 2)])
    assert [s["key"] for s in info["scales"]] == ["8_8_8", "16_16_16", "32_32_16"]

    fine = ts_open(tmp_path / "seg")
    assert list(fine.domain.inclusive_min) == [3, 5, 7, 0]
    assert list(fine.domain.exclusive_max) == [40, 34, 28, 1]
    assert fine.dtype == ts.uint64
    assert np.array_equal(fine[...].read().result()[..., 0], labels)

    for scale_index, factor in ((1, (2, 2, 2)), (2, (4, 4, 2))):
        coarse = ts_open(tmp_path / "seg", scale_index)
        lo = list(coarse.domain.inclusive_min)[:3]
        hi = list(coarse.domain.exclusive_max)[:3]
        assert lo == [math.ceil(o / f) for o, f in zip(offset, factor)]
        assert hi == [math.ceil((o + s) / f) for o, s, f in zip(offset, labels.shape, factor)]
        # Coarse voxel c shows the fine voxel at global coordinate c * factor.
        grids = [np.arange(a, b) * f - o for a, b, f, o in zip(lo, hi, factor, offset)]
        expected = labels[np.ix_(*grids)]
        assert np.array_equal(coarse[...].read().result()[..., 0], expected)
        assert np.array_equal(pc.read_precomputed_volume(tmp_path / "seg", scale_index), expected)


def test_chunk_files_are_byte_identical_to_tensorstore(tmp_path):
    labels = random_labels((40, 33, 18), seed=1)
    ours = tmp_path / "ours"
    pc.write_precomputed_volume(ours, labels, (8, 8, 8), voxel_offset=(64, 0, 10), chunk_size=(16, 16, 16))
    theirs = tmp_path / "theirs"
    store = ts.open({
        "driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": str(theirs)},
        "create": True,
        "multiscale_metadata": {"type": "segmentation", "data_type": "uint64", "num_channels": 1},
        "scale_metadata": {"resolution": [8, 8, 8], "size": list(labels.shape), "voxel_offset": [64, 0, 10],
                           "chunk_size": [16, 16, 16], "encoding": "raw"},
    }).result()
    store[...].write(labels[..., None]).result()

    def chunk_files(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != "info"}

    assert chunk_files(ours) == chunk_files(theirs)
    assert np.array_equal(pc.read_precomputed_volume(theirs), labels)
    our_scale = json.loads((ours / "info").read_text())["scales"][0]
    their_scale = json.loads((theirs / "info").read_text())["scales"][0]
    for key in ("key", "size", "resolution", "voxel_offset", "chunk_sizes", "encoding"):
        assert our_scale[key] == their_scale[key], key


def test_zyx_input_and_image_volumes(tmp_path):
    rng = np.random.default_rng(2)
    stack_zyx = rng.integers(0, 256, size=(9, 20, 31), dtype=np.uint8)  # [z, y, x]
    pc.write_precomputed_volume(tmp_path / "em", stack_zyx, (8, 8, 40), chunk_size=(16, 16, 4),
                                volume_type="image", axis_order="zyx")
    read = ts_open(tmp_path / "em")[...].read().result()[..., 0]
    assert read.shape == (31, 20, 9)
    assert np.array_equal(read, stack_zyx.transpose(2, 1, 0))
    assert read[30, 1, 2] == stack_zyx[2, 1, 30]
    assert np.array_equal(pc.read_precomputed_volume(tmp_path / "em", axis_order="zyx"), stack_zyx)
    assert json.loads((tmp_path / "em" / "info").read_text())["type"] == "image"


def test_skipped_empty_chunks_read_as_zero(tmp_path):
    labels = np.zeros((48, 48, 48), dtype=np.uint64)
    labels[5:9, 40:44, 12:30] = 96  # touches two chunks: z 0-16 and z 16-32
    pc.write_precomputed_volume(tmp_path / "roi", labels, (256, 256, 256), chunk_size=(16, 16, 16),
                                skip_empty_chunks=True)
    files = [p for p in (tmp_path / "roi" / "256_256_256").iterdir()]
    assert len(files) == 2  # only the chunks the box touches
    assert np.array_equal(ts_open(tmp_path / "roi")[...].read().result()[..., 0], labels)
    assert np.array_equal(pc.read_precomputed_volume(tmp_path / "roi"), labels)


def test_region_reads_and_added_scale(tmp_path):
    labels = random_labels((30, 20, 10), seed=3)
    pc.write_precomputed_volume(tmp_path / "v", labels, (128, 128, 128), voxel_offset=(100, 0, 50),
                                chunk_size=(8, 8, 8))
    region = ((103, 121), (4, 19), (55, 60))
    assert np.array_equal(pc.read_precomputed_volume(tmp_path / "v", region=region),
                          labels[3:21, 4:19, 5:10])
    with pytest.raises(ValueError):
        pc.read_precomputed_volume(tmp_path / "v", region=((0, 5), (0, 5), (50, 55)))

    coarse = labels[::2, ::2, ::2].astype(np.uint32)  # cast losslessly to the volume's uint64
    info = pc.add_precomputed_volume_scale(tmp_path / "v", coarse, (256, 256, 256), voxel_offset=(50, 0, 25),
                                           chunk_size=(8, 8, 8))
    assert [s["key"] for s in info["scales"]] == ["128_128_128", "256_256_256"]
    assert np.array_equal(ts_open(tmp_path / "v", 1)[...].read().result()[..., 0], coarse)
    with pytest.raises(FileExistsError):
        pc.write_precomputed_volume(tmp_path / "v", labels, (128, 128, 128))
    with pytest.raises(ValueError):
        pc.add_precomputed_volume_scale(tmp_path / "v", coarse, (256, 256, 256))  # duplicate scale


def test_volume_input_checks(tmp_path):
    with pytest.raises(ValueError, match="data_type"):
        pc.write_precomputed_volume(tmp_path / "a", np.zeros((4, 4, 4), dtype=np.int64), (8, 8, 8))
    pc.write_precomputed_volume(tmp_path / "b", np.full((4, 4, 4), 7, dtype=np.int64), (8, 8, 8), data_type="uint64")
    assert pc.read_precomputed_volume(tmp_path / "b").dtype == np.uint64
    with pytest.raises(ValueError, match="do not fit"):
        pc.write_precomputed_volume(tmp_path / "c", np.full((4, 4, 4), -1, dtype=np.int64), (8, 8, 8), data_type="uint64")
    with pytest.raises(ValueError, match="float32"):
        pc.write_precomputed_volume(tmp_path / "d", np.zeros((4, 4, 4), dtype=np.float32), (8, 8, 8))
    with pytest.raises(ValueError, match="3-dimensional"):
        pc.write_precomputed_volume(tmp_path / "e", np.zeros((4, 4), dtype=np.uint8), (8, 8, 8))


def test_missing_gzipped_and_corrupt_chunks(tmp_path):
    labels = random_labels((16, 16, 16), seed=4)
    root = tmp_path / "v"
    pc.write_precomputed_volume(root, labels, (8, 8, 8), chunk_size=(8, 16, 16))
    first, second = root / "8_8_8" / "0-8_0-16_0-16", root / "8_8_8" / "8-16_0-16_0-16"
    second.with_name(second.name + ".gz").write_bytes(gzip.compress(second.read_bytes()))
    second.unlink()
    assert np.array_equal(pc.read_precomputed_volume(root), labels)  # cloud-volume style .gz
    second.with_name(second.name + ".gz").unlink()
    expected = labels.copy()
    expected[8:] = 0
    assert np.array_equal(pc.read_precomputed_volume(root), expected)  # missing chunk = zeros
    first.write_bytes(first.read_bytes()[:-8])
    with pytest.raises(FormatError, match="0-8_0-16_0-16: chunk has"):
        pc.read_precomputed_volume(root)


def test_unsupported_volume_layouts(tmp_path):
    store = ts.open({
        "driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": str(tmp_path)},
        "create": True,
        "multiscale_metadata": {"type": "segmentation", "data_type": "uint64", "num_channels": 1},
        "scale_metadata": {"resolution": [8, 8, 8], "size": [8, 8, 8], "chunk_size": [8, 8, 8],
                           "encoding": "compressed_segmentation", "compressed_segmentation_block_size": [8, 8, 8]},
    }).result()
    store[...].write(np.ones((8, 8, 8, 1), dtype=np.uint64)).result()
    with pytest.raises(FormatError, match="compressed_segmentation"):
        pc.read_precomputed_volume(tmp_path)


# ------------------------------------------------------------------------------------------
# OBJ meshes
# ------------------------------------------------------------------------------------------

def test_obj_round_trip_and_trimesh_agrees(tmp_path):
    rng = np.random.default_rng(5)
    vertices = rng.normal(size=(48, 3)) * 1000
    vertices[0] = (1.0, -0.0, 3.5)
    # Every vertex used (trimesh drops unreferenced ones), plus random extra faces.
    faces = np.concatenate([rng.permutation(48).reshape(16, 3), rng.integers(0, 48, size=(60, 3))])
    text = pc.write_obj(vertices, faces, tmp_path / "roi.obj", comments=["FB"])
    assert text.split("\n")[:2] == ["# FB", "v 1 0 3.5"]
    v_back, f_back = pc.read_obj(tmp_path / "roi.obj")
    assert np.array_equal(v_back, vertices) and np.array_equal(f_back, faces)
    mesh = trimesh.load(tmp_path / "roi.obj", file_type="obj", process=False)
    assert np.array_equal(mesh.vertices, vertices) and np.array_equal(mesh.faces, faces)


@pytest.mark.parametrize("name", ["lh.obj", "neuropil.obj"])
def test_read_real_roi_meshes_like_trimesh(name):
    path = NAVIS_DATA / "volumes" / name
    vertices, faces = pc.read_obj(path)
    mesh = trimesh.load(path, file_type="obj", process=False)
    assert np.allclose(vertices, mesh.vertices, rtol=0, atol=1e-9)
    assert np.array_equal(faces, mesh.faces)


def test_obj_polygons_slashes_and_negative_indices():
    text = "o roi\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvn 0 0 1\nf 1//1 2//1 3//1 4//1\nf -4/1/1 -2/1/1 -1/1/1\n"
    vertices, faces = pc.read_obj(text)
    assert len(vertices) == 4
    assert faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 2, 3]]


@pytest.mark.parametrize("text,line,message", [
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\n\nf 1 2 4\n", 5, "does not exist"),
    ("v 0 0 0\nv 1 x 0\n", 2, "not numbers"),
    ("v 0 0 0\nf 1 2\n", 2, "at least 3"),
    ("v 0 0 0\nv 0 0 1\nv 0 1 1\nf 0 1 2\n", 4, "index 0"),
])
def test_malformed_obj(text, line, message):
    with pytest.raises(FormatError, match=message) as excinfo:
        pc.read_obj(text)
    assert excinfo.value.line == line and str(excinfo.value).startswith(f"line {line}:")
