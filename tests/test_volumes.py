"""Tests for flatprint.volumes: roi_at / body_at / fetch_subvolume over precomputed and N5.

Independent oracles: the syn-points feather read with pandas (every synapse's primary ROI), the
SWC files parsed with neuprint-python's parser, tensorstore opened directly, and the ROI boxes.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
import time

import numpy as np
import oracle
import pandas as pd
import pytest
from scipy.spatial import cKDTree
from test_morphology import build_morphology_release

from flatprint import volumes
from flatprint.synth import rois as roimod
from flatprint.synth.morphology import SOMA_BALL_NM
from flatprint.volumes import body_at, fetch_subvolume, open_volume, roi_at, roi_names

ts = pytest.importorskip("tensorstore")
neuprint_skeleton = pytest.importorskip("neuprint.skeleton")

BRAIN = "rois/fullbrain-roi-v4"
VNC = "rois/malecns-vnc-neuropil-roi-v0"


@pytest.fixture(scope="module")
def release(tmp_path_factory, release_factory):
    return build_morphology_release(tmp_path_factory, release_factory)[0]


@pytest.fixture(scope="module")
def points(release) -> pd.DataFrame:
    return oracle.load(release, "syn-points")


@pytest.fixture(scope="module")
def some_skeletons(release) -> pd.DataFrame:
    ids = pd.read_json(release / "skeletons" / "index.json", typ="series")["bodyIds"]
    frames = []
    for body in ids[::5]:
        df = neuprint_skeleton.skeleton_swc_to_df(str(release / "skeletons" / "skeletons-swc" / f"{body}.swc"))
        df["bodyId"] = body
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def test_roi_at_matches_every_synapse(release, points):
    xyz = points[["x", "y", "z"]].to_numpy()
    labels = roi_at(xyz, release)
    assert labels.dtype == np.uint64 and len(labels) == len(points)
    np.testing.assert_array_equal(labels, points["primary_label"].to_numpy().astype(np.uint64))
    names = roi_at(points, release, names=True)  # a DataFrame with x, y, z works too
    np.testing.assert_array_equal(names, points["primary"].astype(str).to_numpy())
    # The two volumes split the labels between brain and VNC; a list of sources combines them.
    part, part_labels = xyz[::4], labels[::4]
    brain = roi_at(part, release / BRAIN)
    vnc = roi_at(part, release / VNC)
    assert not np.any((brain > 0) & (vnc > 0))
    np.testing.assert_array_equal(np.maximum(brain, vnc), part_labels)
    np.testing.assert_array_equal(roi_at(part, [release / VNC, release / BRAIN]), part_labels)
    h = roimod.hierarchy()
    vnc_names = set(pd.Series(roi_at(part, release / VNC, names=True)).unique())
    assert vnc_names - {"<unspecified>"} <= {r for r in h.primary if h.major_of_primary[r] == "VNC"}


def test_units_single_points_and_outside(release, points):
    sample = points[["x", "y", "z"]].to_numpy()[:5000]
    expected = points["primary_label"].to_numpy()[:5000]
    np.testing.assert_array_equal(roi_at(sample * 8.0, release, units="nm"), expected)
    np.testing.assert_array_equal(roi_at(sample * 0.008, release, units="um"), expected)
    x, y, z = sample[0]
    assert roi_at([x, y, z], release) == expected[0]
    assert roi_at([x, y, z], release, names=True) == points["primary"].astype(str).iloc[0]
    outside = np.array([[-1, 0, 0], [0, 10**7, 0], [np.nan, 5, 5], [5120, 100, 100]])
    np.testing.assert_array_equal(roi_at(outside, release), [0, 0, 0, 0])
    assert roi_at(np.empty((0, 3)), release).shape == (0,)
    with pytest.raises(ValueError):
        roi_at(np.zeros((4, 2)), release)
    with pytest.raises(ValueError):
        roi_at(sample, release, units="furlong")
    assert roi_at([[0, 0, 0]], release, names={0: "nothing"}, unspecified="none")[0] == "none"


def test_roi_names_from_segment_properties(release):
    h = roimod.hierarchy()
    names = roi_names(release / BRAIN)
    assert names[h.primary.index("a'L(R)") + 1] == "a'L(R)"
    assert all(h.major_of_primary[n] != "VNC" for n in names.values())


def test_a_volume_without_roi_names_is_an_error_naming_what_is_missing(release, points, tmp_path):
    """Labels are a release's own numbering: without segment properties there are no names, and no
    fallback to the synthetic numbering (a real volume would get wrong names silently)."""
    import shutil

    from flatprint.errors import FormatError

    bare = tmp_path / "bare"
    shutil.copytree(release / BRAIN, bare)
    info = json.loads((bare / "info").read_text())
    directory = info.pop("segment_properties")
    (bare / "info").write_text(json.dumps(info))
    xyz = points[["x", "y", "z"]].to_numpy()[:50]
    np.testing.assert_array_equal(roi_at(xyz, bare), roi_at(xyz, release / BRAIN))  # labels still read
    with pytest.raises(FormatError, match=r"bare: the ROI volume names no segment properties"):
        roi_names(bare)
    with pytest.raises(FormatError, match="segment_properties"):
        roi_at(xyz, bare, names=True)
    assert roi_at(xyz[:1], bare, names={0: "none"}, unspecified="?") in ("none", "?")  # names given: fine

    listed = tmp_path / "listed"  # the info names the directory, but its file is gone
    shutil.copytree(release / BRAIN, listed)
    (listed / directory / "info").unlink()
    with pytest.raises(FormatError, match=rf"listed/{directory}/info: the ROI volume's segment properties file"):
        roi_names(listed)


def test_dense_and_batched_reads_agree(release, points, monkeypatch):
    xyz = points[["x", "y", "z"]].to_numpy()[::3]
    dense = roi_at(xyz, release / BRAIN)
    monkeypatch.setattr(volumes, "DENSE_MAX_VOXELS", 0)  # force the vindex path
    np.testing.assert_array_equal(roi_at(xyz, release / BRAIN), dense)


def test_body_at_skeleton_nodes(release, some_skeletons):
    xyz = some_skeletons[["x", "y", "z"]].to_numpy(float)
    found = body_at(xyz, release)
    assert found.dtype == np.uint64
    own = found == some_skeletons["bodyId"].to_numpy().astype(np.uint64)
    assert own.mean() > 0.5
    # A soma root is its own body unless another soma ball overlaps it (oracle: annotations).
    ann = oracle.load(release, "annotations")
    somas = ann[ann["somaLocation"].notna()]
    soma_xyz = np.stack(somas["somaLocation"].to_numpy()).astype(float)
    roots = some_skeletons[(some_skeletons["link"] == -1) & some_skeletons["bodyId"].isin(somas["bodyId"])]
    root_xyz = roots[["x", "y", "z"]].to_numpy(float)
    root_found = body_at(root_xyz, release / "segmentation")
    wrong = root_found != roots["bodyId"].to_numpy().astype(np.uint64)
    reach = (2 * SOMA_BALL_NM + 2 * 128 * np.sqrt(3)) / 8
    crowded = np.array([len(group) > 1 for group in cKDTree(soma_xyz).query_ball_point(root_xyz, reach)])
    assert not np.any(wrong & ~crowded)
    assert np.isin(root_found, somas["bodyId"].to_numpy().astype(np.uint64)).all()
    assert body_at([0, 0, 0], release) == 0
    # The coarser scale (256 nm) agrees with itself read directly.
    coarse = body_at(xyz, release, scale=1)
    store = ts.open(
        {
            "driver": "neuroglancer_precomputed",
            "scale_index": 1,
            "kvstore": {"driver": "file", "path": str(release / "segmentation")},
        },
        read=True,
    ).result()
    idx = np.floor(xyz / 32).astype(int)
    np.testing.assert_array_equal(coarse, store.vindex[idx[:, 0], idx[:, 1], idx[:, 2], 0].read().result())
    assert open_volume(release / "segmentation", 1).resolution_nm.tolist() == [256.0] * 3


def test_fetch_subvolume(release):
    h = roimod.hierarchy()
    primary, _ = roimod.label_volumes()
    x0, x1, y0, y1, z0, z1 = h.boxes["a'L(R)"]
    box = [[x0 * 32, y0 * 32, z0 * 32], [x1 * 32, y1 * 32, z1 * 32]]
    sub = fetch_subvolume(box, release / BRAIN)
    assert sub.shape == (x1 - x0, y1 - y0, z1 - z0)
    assert (sub == h.primary.index("a'L(R)") + 1).all()
    nm = fetch_subvolume(np.array(box) * 8.0 - 1.0, release / BRAIN, units="nm")  # floor / ceil
    np.testing.assert_array_equal(nm, primary[x0 - 1 : x1, y0 - 1 : y1, z0 - 1 : z1])
    with pytest.raises(ValueError):
        fetch_subvolume([[0, 0, 0], [10**6, 10, 10]], release / BRAIN)


def test_n5_multiscale(tmp_path):
    rng = np.random.default_rng(3)
    em = rng.integers(0, 255, size=(96, 80, 40), dtype=np.uint8)
    root = tmp_path / "em.n5"
    root.mkdir()
    (root / "attributes.json").write_text('{"n5": "2.0.0", "resolution": [8, 8, 8]}')
    for level, data in enumerate((em, em[::2, ::2, ::2])):
        store = ts.open(
            {
                "driver": "n5",
                "kvstore": {"driver": "file", "path": str(root / f"s{level}")},
                "create": True,
                "metadata": {
                    "dataType": "uint8",
                    "dimensions": list(data.shape),
                    "blockSize": [32, 32, 32],
                    "compression": {"type": "gzip"},
                    "downsamplingFactors": [2**level] * 3,
                },
            }
        ).result()
        store.write(data).result()
    np.testing.assert_array_equal(fetch_subvolume([[3, 4, 5], [50, 60, 30]], root), em[3:50, 4:60, 5:30])
    np.testing.assert_array_equal(
        fetch_subvolume([[0, 0, 0], [40, 40, 20]], f"n5://{root}", scale=1), em[::2, ::2, ::2][0:20, 0:20, 0:10]
    )
    pts = rng.integers(0, [96, 80, 40], size=(1000, 3))
    np.testing.assert_array_equal(body_at(pts, root / "s0"), em[pts[:, 0], pts[:, 1], pts[:, 2]])
    assert open_volume(root, 1).resolution_nm.tolist() == [16.0] * 3


@pytest.fixture
def http_release(release):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(release))
    handler.log_message = lambda *args, **kwargs: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_sources(release, points, http_release):
    xyz = points[["x", "y", "z"]].to_numpy()[::50]
    expected = points["primary_label"].to_numpy()[::50]
    got = roi_at(xyz, [f"{http_release}/{BRAIN}", f"precomputed://{http_release}/{VNC}"])
    np.testing.assert_array_equal(got, expected)
    names = roi_at(xyz, f"{http_release}/{BRAIN}", names=True)
    brain = roi_at(xyz, release / BRAIN, names=True)
    np.testing.assert_array_equal(names, brain)


def test_million_points_are_fast(release):
    rng = np.random.default_rng(0)
    pts = rng.random((10**6, 3)) * np.array(roimod.ROI_SHAPE_XYZ) * 32
    roi_at(pts[:10], release)
    started = time.perf_counter()
    labels = roi_at(pts, release)
    bodies = body_at(pts, release)
    elapsed = time.perf_counter() - started
    assert len(labels) == len(bodies) == 10**6
    expected, _ = roimod.labels_at(*pts.astype(np.int64).T)
    np.testing.assert_array_equal(labels, expected)
    assert elapsed < 10, elapsed
