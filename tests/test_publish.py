"""flatprint.io.publish.atomic_output: the one way stores and exports are published.

Every expectation is stated on paper: what the target holds, which work directories remain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from flatprint.errors import StoreError
from flatprint.io.publish import atomic_output, clean_stale_work


def leftovers(target):
    return sorted(p.name for p in target.parent.glob(f".{target.name}.*"))


def test_a_directory_is_published_whole_and_replaced_only_with_force(tmp_path):
    out = tmp_path / "export"
    with atomic_output(out, "parquet") as work:
        assert work.name == f".export.parquet-{os.getpid()}" and work.parent == tmp_path
        (work / "a.txt").write_text("first")
        assert not out.exists()  # nothing visible before success
    assert (out / "a.txt").read_text() == "first" and leftovers(out) == []
    with pytest.raises(StoreError, match=r"export already exists \(use --force"):
        with atomic_output(out, "parquet"):
            pytest.fail("must not start over an existing output")
    with atomic_output(out, "parquet", force=True) as work:
        (work / "b.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"] and leftovers(out) == []


def test_a_file_inside_the_work_directory_is_published(tmp_path):
    store = tmp_path / "store.duckdb"
    store.write_text("old")
    with atomic_output(store, "ingest", force=True, publish="built.db") as work:
        (work / "built.db").write_text("new")
        (work / "spill").mkdir()  # scratch space goes with the work directory
    assert store.read_text() == "new" and leftovers(store) == []


def test_a_missing_result_is_an_error_naming_it(tmp_path):
    with pytest.raises(StoreError, match=r"built.db: the ingest finished without writing its output"):
        with atomic_output(tmp_path / "s", "ingest", publish="built.db"):
            pass
    assert not (tmp_path / "s").exists() and leftovers(tmp_path / "s") == []


def test_an_error_leaves_the_old_output_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError, match="half way"):
        with atomic_output(out, "neo4j", force=True) as work:
            (work / "partial.csv").write_text("x")
            raise RuntimeError("half way")
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and leftovers(out) == []


def test_sigterm_becomes_an_exception_and_the_handler_is_restored(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="ingest terminated"):
        with atomic_output(tmp_path / "s", "ingest") as work:
            (work / "x").write_text("x")
            os.kill(os.getpid(), signal.SIGTERM)
            pytest.fail("SIGTERM should have interrupted the block")
    assert signal.getsignal(signal.SIGTERM) == before
    assert not (tmp_path / "s").exists() and leftovers(tmp_path / "s") == []


def test_work_of_dead_processes_is_cleaned_and_of_live_ones_kept(tmp_path):
    target = tmp_path / "store.duckdb"
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead = int(finished.stdout)  # a process that has exited
    live = os.getppid()  # pytest's parent is running
    for name in (
        f".store.duckdb.ingest-{dead}",
        f".store.duckdb.old-{dead}",
        f".store.duckdb.ingest-{live}",
        f".store.duckdb.export-{dead}",
        f".other.ingest-{dead}",
    ):
        (tmp_path / name).mkdir()
    removed = clean_stale_work(target, "ingest")
    assert sorted(p.name for p in removed) == [f".store.duckdb.ingest-{dead}", f".store.duckdb.old-{dead}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f".store.duckdb.ingest-{live}", f".store.duckdb.export-{dead}", f".other.ingest-{dead}"]
    )
    # a new run cleans the same way before it starts
    (tmp_path / f".store.duckdb.ingest-{dead}").mkdir()
    with atomic_output(target, "ingest", publish="s") as work:
        (work / "s").write_text("s")
    assert not (tmp_path / f".store.duckdb.ingest-{dead}").exists() and target.read_text() == "s"
