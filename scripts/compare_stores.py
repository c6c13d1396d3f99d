"""Check that two stores hold identical tables: the same tables, columns and types, and in every
table the same rows in the same stored order.

Used to prove that a change to the ingest leaves the store as it was: build one store with the old
code and one with the new from the same release, then

    python scripts/compare_stores.py old.duckdb new.duckdb

Each table is compared with DuckDB ``EXCEPT ALL`` both ways over (rowid, every column): rowid is a
row's stored position, so an empty difference both ways means the same rows in the same order.
``meta`` and ``store_info`` are compared the same way except for the values that record when the
store was built and its random uuid. Exits 1 and names every table that differs.

DuckDB runs under ``--memory-limit`` (default 4GB) and spills to a temporary directory that is
removed at the end: without a limit, comparing two scale-0.1 stores took 19.6 GB of RAM, and the
spill went to the working directory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import duckdb

# Keys whose values differ between any two builds: build time and a fresh uuid.
VOLATILE_KEYS = {"meta": ("lastDatabaseEdit", "uuid"), "store_info": ("ingestedAt",)}


def _columns(con, catalog: str) -> dict[str, list[tuple[str, str]]]:
    rows = con.execute(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = ? AND schema_name = 'main' ORDER BY table_name, column_index",
        [catalog],
    ).fetchall()
    out: dict[str, list[tuple[str, str]]] = {}
    for table, column, dtype in rows:
        out.setdefault(table, []).append((column, dtype))
    return out


def compare_stores(old: Path, new: Path, memory_limit: str = "4GB") -> list[str]:
    """Differences between the stores at ``old`` and ``new`` (empty when identical)."""
    for path in (old, new):
        if not Path(path).is_file():
            raise SystemExit(f"{path}: no such store")
    with tempfile.TemporaryDirectory(prefix="compare-stores-") as spill:
        # EXCEPT ALL needs no insertion order: without it DuckDB streams in less memory
        config = {"memory_limit": memory_limit, "temp_directory": spill, "preserve_insertion_order": False}
        con = duckdb.connect(config=config)
        try:
            return _differences(con, old, new)
        finally:
            con.close()


def _differences(con, old: Path, new: Path) -> list[str]:
    con.execute(f"ATTACH '{str(old).replace(chr(39), chr(39) * 2)}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{str(new).replace(chr(39), chr(39) * 2)}' AS b (READ_ONLY)")
    cols_a, cols_b = _columns(con, "a"), _columns(con, "b")
    problems = [f"table {t}: only in {old}" for t in sorted(set(cols_a) - set(cols_b))]
    problems += [f"table {t}: only in {new}" for t in sorted(set(cols_b) - set(cols_a))]
    for table in sorted(set(cols_a) & set(cols_b)):
        if cols_a[table] != cols_b[table]:
            problems.append(f"table {table}: columns differ: {cols_a[table]} vs {cols_b[table]}")
            continue
        keep = ""
        if table in VOLATILE_KEYS:
            keys = ", ".join(f"'{k}'" for k in VOLATILE_KEYS[table])
            keep = f" WHERE key NOT IN ({keys})"
        n_a, n_b = (con.execute(f'SELECT count(*) FROM {c}."{table}"').fetchall()[0][0] for c in ("a", "b"))
        if n_a != n_b:
            problems.append(f"table {table}: {n_a} rows vs {n_b}")
            continue
        # ROW_NUMBER over rowid is the stored position even where rowids of a table have gaps.
        select = 'SELECT row_number() OVER (ORDER BY rowid) AS position, * FROM {}."{}"' + keep
        for x, y in (("a", "b"), ("b", "a")):
            extra = con.execute(
                f"SELECT count(*) FROM ({select.format(x, table)} EXCEPT ALL {select.format(y, table)})"
            ).fetchall()[0][0]
            if extra:
                where = old if x == "a" else new
                problems.append(f"table {table}: {extra} (position, row) pairs only in {where}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--memory-limit", default="4GB", help="DuckDB's memory limit (it spills beyond)")
    args = parser.parse_args(argv)
    problems = compare_stores(args.old, args.new, args.memory_limit)
    for p in problems:
        print(p)
    if not problems:
        print("identical: every table has the same columns, rows and order")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
