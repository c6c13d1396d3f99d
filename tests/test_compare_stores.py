"""scripts/compare_stores.py, the check that an ingest change leaves the store as it was: it passes
two builds of one release and names every table whose columns, rows or row order differ."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import duckdb
import pytest

from flatprint.ingest import ingest_release

REPO = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("compare_stores", REPO / "scripts" / "compare_stores.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


compare = _load_script()


@pytest.fixture(scope="module")
def two_builds(release_dir, store_path, tmp_path_factory) -> tuple[Path, Path]:
    """The session's store and a second build of the same release, in other body ranges."""
    again = tmp_path_factory.mktemp("compare") / "again.duckdb"
    ingest_release(release_dir, again, progress=False, memory_limit="2GB", buckets=3)
    return store_path, again


def _edited(path: Path, tmp_path: Path, *statements: str) -> Path:
    out = tmp_path / "edited.duckdb"
    shutil.copy(path, out)
    with duckdb.connect(str(out)) as con:
        for statement in statements:
            con.execute(statement)
    return out


def test_two_builds_are_identical(two_builds, capsys):
    assert compare.compare_stores(*two_builds) == []
    assert compare.main([str(p) for p in two_builds]) == 0
    assert "identical" in capsys.readouterr().out


def test_reordered_rows_differ(two_builds, tmp_path):
    """Same rows in another order: every multiset check would pass, the position check does not."""
    edited = _edited(
        two_builds[1],
        tmp_path,
        "CREATE TABLE c2 AS SELECT * FROM connections ORDER BY body_pre DESC, body_post DESC",
        "DROP TABLE connections",
        "ALTER TABLE c2 RENAME TO connections",
    )
    problems = compare.compare_stores(two_builds[0], edited)
    assert problems and all(p.startswith("table connections:") for p in problems)
    assert compare.main([str(two_builds[0]), str(edited)]) == 1


def test_changed_value_type_and_missing_table_differ(two_builds, tmp_path):
    edited = _edited(
        two_builds[1],
        tmp_path,
        "UPDATE synapses SET conf = conf + 0.5 WHERE syn_id = 3",
        "CREATE TABLE s2 AS SELECT * REPLACE (CAST(weight AS INTEGER) AS weight) FROM connection_rois",
        "DROP TABLE connection_rois",
        "ALTER TABLE s2 RENAME TO connection_rois",
        "DROP TABLE roi_map",
    )
    problems = "\n".join(compare.compare_stores(two_builds[0], edited))
    assert "table synapses: 1 (position, row) pairs only in" in problems
    assert "table connection_rois: columns differ" in problems
    assert "table roi_map: only in" in problems
    for table in ("segments", "partners", "connections"):
        assert f"table {table}:" not in problems


def test_build_time_is_not_a_difference(two_builds, tmp_path):
    edited = _edited(
        two_builds[1],
        tmp_path,
        "UPDATE meta SET value = '\"2000-01-01T00:00:00+00:00\"' WHERE key = 'lastDatabaseEdit'",
    )
    assert compare.compare_stores(two_builds[0], edited) == []
    edited = _edited(two_builds[1], tmp_path, "UPDATE meta SET value = '\"other\"' WHERE key = 'dataset'")
    assert compare.compare_stores(two_builds[0], edited) == [
        f"table meta: 1 (position, row) pairs only in {two_builds[0]}",
        f"table meta: 1 (position, row) pairs only in {edited}",
    ]


def test_runs_under_a_memory_limit_and_leaves_no_spill(two_builds, tmp_path, monkeypatch):
    """A small limit still compares (DuckDB spills to a temporary directory, removed afterwards);
    nothing is written to the working directory (a 0.1 comparison once left 4 GB of spill there).
    512MB: a full-suite run on format 5 (roiInfo stored with ZSTD) ran out of 256MB."""
    monkeypatch.chdir(tmp_path)
    assert compare.compare_stores(*two_builds, memory_limit="512MB") == []
    assert list(tmp_path.iterdir()) == []
