"""Tests for flatprint.io.precomputed_volumes, against tensorstore's neuroglancer_precomputed driver."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from flatprint.errors import FormatError
from flatprint.io.precomputed_volumes import (
    add_precomputed_volume_scale,
    read_precomputed_volume,
    write_precomputed_volume,
)

ts = pytest.importorskip("tensorstore")


HYPOTHESIS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


# ------------------------------------------------------------------------------------------
# Volumes, checked against tensorstore
# ------------------------------------------------------------------------------------------


def ts_open(path: Path, scale_index: int = 0):
    return ts.open(
        {
            "driver": "neuroglancer_precomputed",
            "kvstore": {"driver": "file", "path": str(path)},
            "scale_index": scale_index,
        },
        read=True,
    ).result()


def random_labels(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Few distinct labels, some above 2**32 to catch 32-bit truncation.
    palette = np.array([0, 1, 12781, 556329, 2**32 + 5, 2**63 + 11], dtype=np.uint64)
    return palette[rng.integers(0, len(palette), size=shape)]


def test_volume_reads_back_identically_with_tensorstore(tmp_path):
    labels = random_labels((37, 29, 21))
    offset = (3, 5, 7)
    info = write_precomputed_volume(
        tmp_path / "seg",
        labels,
        (8, 8, 8),
        voxel_offset=offset,
        chunk_size=(16, 16, 8),
        downsample_factors=[(2, 2, 2), (4, 4, 2)],
    )
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
        assert np.array_equal(read_precomputed_volume(tmp_path / "seg", scale_index), expected)


def test_chunk_files_are_byte_identical_to_tensorstore(tmp_path):
    labels = random_labels((40, 33, 18), seed=1)
    ours = tmp_path / "ours"
    write_precomputed_volume(ours, labels, (8, 8, 8), voxel_offset=(64, 0, 10), chunk_size=(16, 16, 16))
    theirs = tmp_path / "theirs"
    store = ts.open(
        {
            "driver": "neuroglancer_precomputed",
            "kvstore": {"driver": "file", "path": str(theirs)},
            "create": True,
            "multiscale_metadata": {"type": "segmentation", "data_type": "uint64", "num_channels": 1},
            "scale_metadata": {
                "resolution": [8, 8, 8],
                "size": list(labels.shape),
                "voxel_offset": [64, 0, 10],
                "chunk_size": [16, 16, 16],
                "encoding": "raw",
            },
        }
    ).result()
    store[...].write(labels[..., None]).result()

    def chunk_files(root):
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != "info"
        }

    assert chunk_files(ours) == chunk_files(theirs)
    assert np.array_equal(read_precomputed_volume(theirs), labels)
    our_scale = json.loads((ours / "info").read_text())["scales"][0]
    their_scale = json.loads((theirs / "info").read_text())["scales"][0]
    for key in ("key", "size", "resolution", "voxel_offset", "chunk_sizes", "encoding"):
        assert our_scale[key] == their_scale[key], key


def test_zyx_input_and_image_volumes(tmp_path):
    rng = np.random.default_rng(2)
    stack_zyx = rng.integers(0, 256, size=(9, 20, 31), dtype=np.uint8)  # [z, y, x]
    write_precomputed_volume(
        tmp_path / "em", stack_zyx, (8, 8, 40), chunk_size=(16, 16, 4), volume_type="image", axis_order="zyx"
    )
    read = ts_open(tmp_path / "em")[...].read().result()[..., 0]
    assert read.shape == (31, 20, 9)
    assert np.array_equal(read, stack_zyx.transpose(2, 1, 0))
    assert read[30, 1, 2] == stack_zyx[2, 1, 30]
    assert np.array_equal(read_precomputed_volume(tmp_path / "em", axis_order="zyx"), stack_zyx)
    assert json.loads((tmp_path / "em" / "info").read_text())["type"] == "image"


def test_skipped_empty_chunks_read_as_zero(tmp_path):
    labels = np.zeros((48, 48, 48), dtype=np.uint64)
    labels[5:9, 40:44, 12:30] = 96  # touches two chunks: z 0-16 and z 16-32
    write_precomputed_volume(tmp_path / "roi", labels, (256, 256, 256), chunk_size=(16, 16, 16), skip_empty_chunks=True)
    files = [p for p in (tmp_path / "roi" / "256_256_256").iterdir()]
    assert len(files) == 2  # only the chunks the box touches
    assert np.array_equal(ts_open(tmp_path / "roi")[...].read().result()[..., 0], labels)
    assert np.array_equal(read_precomputed_volume(tmp_path / "roi"), labels)


def test_region_reads_and_added_scale(tmp_path):
    labels = random_labels((30, 20, 10), seed=3)
    write_precomputed_volume(tmp_path / "v", labels, (128, 128, 128), voxel_offset=(100, 0, 50), chunk_size=(8, 8, 8))
    region = ((103, 121), (4, 19), (55, 60))
    assert np.array_equal(read_precomputed_volume(tmp_path / "v", region=region), labels[3:21, 4:19, 5:10])
    with pytest.raises(ValueError):
        read_precomputed_volume(tmp_path / "v", region=((0, 5), (0, 5), (50, 55)))

    coarse = labels[::2, ::2, ::2].astype(np.uint32)  # cast losslessly to the volume's uint64
    info = add_precomputed_volume_scale(
        tmp_path / "v", coarse, (256, 256, 256), voxel_offset=(50, 0, 25), chunk_size=(8, 8, 8)
    )
    assert [s["key"] for s in info["scales"]] == ["128_128_128", "256_256_256"]
    assert np.array_equal(ts_open(tmp_path / "v", 1)[...].read().result()[..., 0], coarse)
    with pytest.raises(FileExistsError):
        write_precomputed_volume(tmp_path / "v", labels, (128, 128, 128))
    with pytest.raises(ValueError):
        add_precomputed_volume_scale(tmp_path / "v", coarse, (256, 256, 256))  # duplicate scale


def test_volume_input_checks(tmp_path):
    with pytest.raises(ValueError, match="data_type"):
        write_precomputed_volume(tmp_path / "a", np.zeros((4, 4, 4), dtype=np.int64), (8, 8, 8))
    write_precomputed_volume(tmp_path / "b", np.full((4, 4, 4), 7, dtype=np.int64), (8, 8, 8), data_type="uint64")
    assert read_precomputed_volume(tmp_path / "b").dtype == np.uint64
    with pytest.raises(ValueError, match="do not fit"):
        write_precomputed_volume(tmp_path / "c", np.full((4, 4, 4), -1, dtype=np.int64), (8, 8, 8), data_type="uint64")
    with pytest.raises(ValueError, match="float32"):
        write_precomputed_volume(tmp_path / "d", np.zeros((4, 4, 4), dtype=np.float32), (8, 8, 8))
    with pytest.raises(ValueError, match="3-dimensional"):
        write_precomputed_volume(tmp_path / "e", np.zeros((4, 4), dtype=np.uint8), (8, 8, 8))


def test_missing_gzipped_and_corrupt_chunks(tmp_path):
    labels = random_labels((16, 16, 16), seed=4)
    root = tmp_path / "v"
    write_precomputed_volume(root, labels, (8, 8, 8), chunk_size=(8, 16, 16))
    first, second = root / "8_8_8" / "0-8_0-16_0-16", root / "8_8_8" / "8-16_0-16_0-16"
    second.with_name(second.name + ".gz").write_bytes(gzip.compress(second.read_bytes()))
    second.unlink()
    assert np.array_equal(read_precomputed_volume(root), labels)  # cloud-volume style .gz
    second.with_name(second.name + ".gz").unlink()
    expected = labels.copy()
    expected[8:] = 0
    assert np.array_equal(read_precomputed_volume(root), expected)  # missing chunk = zeros
    first.write_bytes(first.read_bytes()[:-8])
    with pytest.raises(FormatError, match="0-8_0-16_0-16: chunk has"):
        read_precomputed_volume(root)


def test_unsupported_volume_layouts(tmp_path):
    store = ts.open(
        {
            "driver": "neuroglancer_precomputed",
            "kvstore": {"driver": "file", "path": str(tmp_path)},
            "create": True,
            "multiscale_metadata": {"type": "segmentation", "data_type": "uint64", "num_channels": 1},
            "scale_metadata": {
                "resolution": [8, 8, 8],
                "size": [8, 8, 8],
                "chunk_size": [8, 8, 8],
                "encoding": "compressed_segmentation",
                "compressed_segmentation_block_size": [8, 8, 8],
            },
        }
    ).result()
    store[...].write(np.ones((8, 8, 8, 1), dtype=np.uint64)).result()
    with pytest.raises(FormatError, match="compressed_segmentation"):
        read_precomputed_volume(tmp_path)


# ------------------------------------------------------------------------------------------
