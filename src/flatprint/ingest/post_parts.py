"""The partners step's rows of ``connections`` and ``connection_rois`` partitioned by the body_post
range (``<table>-by-post/post_bucket=k/rows.arrows``), which the post-sorted copies read one range
at a time. Written from the Arrow tables the step inserts, as they are made: reading each body
range's rows back from the tables and computing the range of every row in SQL (one comparison per
bound) cost about a seventh of the step's CPU at scale 0.1, and more with more bounds. LZ4 Arrow
stream files, not Parquet: they are read once, and Parquet's encoding was ~15% of the step's CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from flatprint.io.arrow_ipc import stream_file_writer

FILE_NAME = "rows.arrows"


class PostPartitions:
    """One stream file per table and body_post range, appended to piece by piece (close() ends them)."""

    def __init__(self, work: Path, bounds: list[int]):
        self.work = work
        self.edges = np.asarray(bounds, dtype=np.int64)
        self.writers: dict = {}  # (table, range) -> its stream file's writer

    def write(self, table: str, rows: pa.Table) -> None:
        """Append ``rows`` (with a body_post column) to ``table``'s partitions, each row to its range's
        (range k holds bounds[k-1] <= body_post < bounds[k]), in their order."""
        if not rows.num_rows:
            return
        bucket = np.searchsorted(self.edges, rows.column("body_post").to_numpy(), side="right")
        counts = np.bincount(bucket, minlength=len(self.edges) + 1)
        if np.count_nonzero(counts) > 1:
            rows = rows.take(np.argsort(bucket.astype(np.uint16), kind="stable"))  # a radix sort
        start = 0
        for k in np.flatnonzero(counts):
            part = rows.slice(start, int(counts[k]))
            start += int(counts[k])
            writer = self.writers.get((table, int(k)))
            if writer is None:
                folder = self.work / f"{table}-by-post" / f"post_bucket={k}"
                folder.mkdir(parents=True, exist_ok=True)
                writer = self.writers[(table, int(k))] = stream_file_writer(folder / FILE_NAME, rows.schema, "lz4")
            writer.write_table(part)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


def partition_file(work: Path, table: str, k: int) -> Path | None:
    """Range ``k``'s stream file of ``table``, or None when no row of it lies in that range."""
    path = work / f"{table}-by-post" / f"post_bucket={k}" / FILE_NAME
    return path if path.exists() else None
