"""roiInfo text from per-ROI counts (ingest/roi_info.py) equals the text the ingest's SQL made before:
each body's pieces ``"roi":{"pre":..,"post":..,"downstream":..,"upstream":..,"synweight":..}``
sorted as strings and joined in braces (the oracle here builds them with plain Python)."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flatprint.ingest.roi_info import COUNT_COLUMNS, ROI_INFO_ROW_GROUP_ROWS, write_roi_info
from flatprint.ingest.segments import _RoiInfo

# Names whose text order differs from the order of their JSON keys' characters around the quote:
# ' ' and '!' sort before '"', so "A B" < "A" as pieces but "A" < "A B" as names; "A(L)" and "A"
# share a prefix; one needs JSON escaping.
NAMES = ["A", "A B", "A!", "A(L)", "AB", 'q"uote', "b", "Ä", "ME(R)", "a"]


def _oracle(bodies, rois, counts) -> dict[int, str]:
    pieces: dict[int, list[str]] = {}
    for body, roi, row in zip(bodies, rois, counts):
        values = dict(zip(COUNT_COLUMNS, row))
        piece = json.dumps(roi, ensure_ascii=False) + ':{"pre":' + str(values["pre"])
        piece += "".join(f',"{c}":{values[c]}' for c in COUNT_COLUMNS[1:]) + "}"
        pieces.setdefault(int(body), []).append(piece)
    return {body: "{" + ",".join(sorted(p)) + "}" for body, p in pieces.items()}


def _keys_by_rank(names):
    """The key prefixes and ranks as the ingest makes them (DuckDB's to_json and text order)."""
    with duckdb.connect() as con:
        rows = con.execute(
            """SELECT name, key, (row_number() OVER (ORDER BY key) - 1)::INTEGER FROM (
                 SELECT name, to_json(name)::VARCHAR || ':{"pre":' AS key FROM unnest(?) t(name))""",
            [names],
        ).fetchall()
    rank = {name: r for name, _, r in rows}
    keys = [key for _, key, _ in sorted(rows, key=lambda row: row[2])]
    return rank, keys


@pytest.mark.parametrize(
    ("batch_rows", "high", "n_bodies"),
    [(1, 10**10, 40), (7, 10**10, 40), (1 << 20, 10**10, 40), (1 << 20, 4, 400), (300, 2000, 400)],
)
def test_roi_info_text_equals_sorted_pieces(tmp_path, batch_rows, high, n_bodies):
    """Bodies span batches (batch_rows 1, 7 and 300 split them), counts include 0 and large values, and
    the names' order as text differs from their order as pieces. Counts below ``high``: small ones
    make many rows share a piece (formatted once), 2000 mixes those with counts too large to share."""
    rng = np.random.default_rng(5)
    rank, keys = _keys_by_rank(NAMES)
    bodies, rois = [], []
    for body in sorted(rng.choice(10**12, size=n_bodies, replace=False)):
        for roi in rng.choice(NAMES, size=int(rng.integers(1, len(NAMES) + 1)), replace=False):
            bodies.append(int(body))
            rois.append(str(roi))
    counts = rng.integers(0, high, size=(len(bodies), len(COUNT_COLUMNS)))
    counts[::5] = 0
    order = sorted(range(len(bodies)), key=lambda i: (bodies[i], rank[rois[i]]))
    table = pa.table(
        {
            "bodyId": pa.array([bodies[i] for i in order], pa.int64()),
            "key_rank": pa.array([rank[rois[i]] for i in order], pa.int32()),
            **{c: pa.array(counts[order, j], pa.int64()) for j, c in enumerate(COUNT_COLUMNS)},
        }
    )
    out = tmp_path / "roi-info.parquet"
    write_roi_info(pa.RecordBatchReader.from_batches(table.schema, table.to_batches(batch_rows)), keys, out)
    got = pq.read_table(out).to_pydict()
    want = _oracle(bodies, rois, counts.tolist())
    assert got["bodyId"] == sorted(want)  # one row per body, in body order
    assert dict(zip(got["bodyId"], got["roiInfo"])) == want
    for text in got["roiInfo"]:
        assert set(json.loads(text)) <= set(NAMES)


def test_roi_info_of_no_rows_is_an_empty_file(tmp_path):
    schema = pa.schema([("bodyId", pa.int64()), ("key_rank", pa.int32())] + [(c, pa.int64()) for c in COUNT_COLUMNS])
    out = tmp_path / "empty.parquet"
    write_roi_info(pa.RecordBatchReader.from_batches(schema, []), ["x"], out)
    read = pq.read_table(out)
    assert read.num_rows == 0 and read.schema.names == ["bodyId", "roiInfo"]


def test_segments_reads_each_run_of_bodies_across_row_groups(tmp_path):
    """segments reads the texts of a run of bodies from the row groups that overlap it
    (segments._RoiInfo): with files of many small row groups and runs that start and end inside
    groups, inside gaps and across files, each run gets exactly its bodies' texts (the oracle:
    plain Python over the same rows)."""
    rng = np.random.default_rng(11)
    rank, keys = _keys_by_rank(NAMES)
    bodies = np.sort(rng.choice(10**9, size=3 * ROI_INFO_ROW_GROUP_ROWS + 123, replace=False))
    files, want = [], {}
    for part, chunk in enumerate(np.array_split(bodies, 3)):  # three body ranges, one file each
        names = [NAMES[i] for i in rng.integers(0, len(NAMES), size=len(chunk))]
        counts = rng.integers(0, 50, size=(len(chunk), len(COUNT_COLUMNS)))
        want.update(_oracle(chunk.tolist(), names, counts.tolist()))
        table = pa.table(
            {
                "bodyId": pa.array(chunk, pa.int64()),
                "key_rank": pa.array([rank[n] for n in names], pa.int32()),
                **{c: pa.array(counts[:, j], pa.int64()) for j, c in enumerate(COUNT_COLUMNS)},
            }
        )
        files.append(tmp_path / f"{part:05d}.parquet")
        write_roi_info(pa.RecordBatchReader.from_batches(table.schema, table.to_batches(5000)), keys, files[-1])
        assert pq.ParquetFile(files[-1]).metadata.num_row_groups > 1
    roi_info = _RoiInfo(files)
    for lo, hi in [
        (0, 10**9),
        (int(bodies[5]), int(bodies[40_000])),
        (int(bodies[20_000]) + 1, int(bodies[20_001]) - 1),
    ]:
        got_bodies, texts = roi_info.between(lo, hi)
        expected = [b for b in sorted(want) if lo <= b <= hi]
        assert got_bodies.tolist() == expected
        assert texts.to_pylist() == [want[b] for b in expected]
