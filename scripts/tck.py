"""Measure the Cypher engine against the openCypher TCK (Technology Compatibility Kit).

    python scripts/tck.py PATH/TO/openCypher/tck/features STORE.duckdb [--timeout 2] [--list-failures]

The TCK is not part of this repository: pass the path of its ``tck/features`` directory from a
checkout of the openCypher repository. flatprint's store is read-only and holds a connectome, so
two kinds of scenario are measured:

- error scenarios expecting an error at compile time: passed when ``parse`` + ``analyze`` refuse
  the query (nothing runs); scenarios expecting a runtime error: passed when ``execute`` raises;
- row scenarios that need no graph: no setup step (``having executed``, a named graph) and no
  MATCH, so that the store's contents cannot matter. Expected cells are evaluated as Cypher
  literals; cells with nodes, relationships or paths are not comparable and those scenarios are
  left out.

Prints counts and percentages; exit status 0 (a measurement, not a test).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from flatprint.cypher.analyzer import analyze
from flatprint.cypher.engine import execute
from flatprint.cypher.errors import CypherError, CypherWriteError
from flatprint.cypher.evaluator import Evaluator
from flatprint.cypher.parser import parse, parse_expression
from flatprint.errors import QueryError
from flatprint.store import Store


def scenarios(path: Path):
    """(name, steps) per scenario of a feature file; outlines expanded over their Examples."""
    lines = path.read_text().splitlines()
    blocks, current = [], None
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        if stripped.startswith(("Scenario:", "Scenario Outline:")):
            current = [stripped]
            blocks.append(current)
        elif current is not None:
            current.append(line)
    for block in blocks:
        name, body = block[0], block[1:]
        if name.startswith("Scenario Outline:") and any(b.strip().startswith("Examples") for b in body):
            at = next(i for i, b in enumerate(body) if b.strip().startswith("Examples"))
            template, examples = body[:at], [b.strip() for b in body[at + 1 :] if b.strip().startswith("|")]
            header = _cells(examples[0])
            for row in examples[1:]:
                values = dict(zip(header, _cells(row)))
                yield f"{path.stem} {name} {values}", _steps([_fill(t, values) for t in template])
        else:
            yield f"{path.stem} {name}", _steps(body)


def _fill(text: str, values: dict) -> str:
    return re.sub(r"<(\w+)>", lambda m: values.get(m.group(1), m.group(0)), text)


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def _steps(body: list[str]) -> list[tuple[str, str | None, list[list[str]]]]:
    """(step text, doc string, table rows) per step."""
    steps, i = [], 0
    while i < len(body):
        text = body[i].strip()
        i += 1
        if not text:
            continue
        doc, table = None, []
        if i < len(body) and body[i].strip() == '"""':
            end = next(j for j in range(i + 1, len(body)) if body[j].strip() == '"""')
            indent = len(body[i]) - len(body[i].lstrip())
            doc = "\n".join(b[indent:] for b in body[i + 1 : end])
            i = end + 1
        while i < len(body) and body[i].strip().startswith("|"):
            table.append(_cells(body[i]))
            i += 1
        steps.append((text, doc, table))
    return steps


_ENTITY = re.compile(r"^[(<\[]:|^\(|^<|\[:")


def expected_value(cell: str):
    if _ENTITY.search(cell):
        raise ValueError("entity")
    return Evaluator({})(parse_expression(cell), {})


def same(a, b, unordered_lists: bool) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or isinstance(a, (bool, str, list, dict)) or isinstance(b, (bool, str, list, dict)):
            return False
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return False
        if unordered_lists:
            rest = list(b)
            for x in a:
                hit = next((i for i, y in enumerate(rest) if same(x, y, True)), None)
                if hit is None:
                    return False
                rest.pop(hit)
            return True
        return all(same(x, y, False) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], unordered_lists) for k in a)
    return type(a) is type(b) and a == b


def rows_match(got, want, ordered: bool, unordered_lists: bool) -> bool:
    if len(got) != len(want):
        return False
    if ordered:
        return all(same(g, w, unordered_lists) for g, w in zip(got, want))
    rest = list(want)
    for g in got:
        hit = next((i for i, w in enumerate(rest) if same(g, w, unordered_lists)), None)
        if hit is None:
            return False
        rest.pop(hit)
    return True


def run(features: Path, store, timeout: float, list_failures: bool) -> None:
    counts = {
        k: 0
        for k in (
            "error_compile",
            "error_compile_refused",
            "error_compile_writes",
            "error_runtime",
            "error_runtime_raised",
            "rows",
            "rows_passed",
            "rows_skipped",
        )
    }
    failures = []
    for path in sorted(features.rglob("*.feature")):
        for name, steps in scenarios(path):
            setup = any(
                t.startswith("And having executed")
                or (t.startswith("Given") and "graph" in t and "empty" not in t and "any" not in t)
                for t, _, _ in steps
            )
            query = next((doc for t, doc, _ in steps if t.startswith("When executing query")), None)
            if query is None:
                continue
            params = {}
            for t, _, table in steps:
                if t.startswith("And parameters are"):
                    params = {row[0]: expected_value(row[1]) for row in table}
            then = next((s for s in steps if s[0].startswith("Then")), None)
            if then is None:
                continue
            text, _, table = then
            error = re.match(r"Then an? (\w+) should be raised at (compile time|runtime|any time)", text)
            if error and error.group(2) in ("compile time", "any time"):
                counts["error_compile"] += 1
                try:
                    analyze(parse(query))
                    failures.append(("accepted", name))
                except CypherWriteError:  # refused, but for writing rather than for what the scenario tests
                    counts["error_compile_refused"] += 1
                    counts["error_compile_writes"] += 1
                except CypherError:
                    counts["error_compile_refused"] += 1
                continue
            if error:
                counts["error_runtime"] += 1
                try:
                    execute(store, query, timeout=timeout, params=params)
                    failures.append(("no runtime error", name))
                except QueryError:
                    counts["error_runtime_raised"] += 1
                continue
            if setup or re.search(r"\bMATCH\b|\bCREATE\b|\bMERGE\b|\bCALL\b", query, re.I):
                counts["rows_skipped"] += 1
                continue
            try:
                want = [[expected_value(c) for c in row] for row in table[1:]] if table else []
            except Exception:  # cells the literal parser cannot read (nodes, paths, ...)
                counts["rows_skipped"] += 1
                continue
            counts["rows"] += 1
            try:
                result = execute(store, query, timeout=timeout, params=params)
            except QueryError as exc:
                failures.append((f"error: {exc}", name))
                continue
            columns = table[0] if table else None
            ok = ("empty" in text and not result.data) or (
                columns is not None
                and result.columns == columns
                and rows_match(result.data, want, "in order" in text, "ignoring element order" in text)
            )
            if ok:
                counts["rows_passed"] += 1
            else:
                failures.append((f"rows {result.columns} {result.data[:3]}", name))
    if list_failures:
        for why, name in failures:
            print(f"FAIL {name}: {why[:200]}")

    def pct(a, b):
        return f"{100 * a / b:.1f} %" if b else "n/a"

    print(
        f"row scenarios without a graph: {counts['rows_passed']}/{counts['rows']} passed "
        f"({pct(counts['rows_passed'], counts['rows'])}); {counts['rows_skipped']} need a graph or entities"
    )
    print(
        f"compile-time error scenarios: {counts['error_compile_refused']}/{counts['error_compile']} refused "
        f"before running ({pct(counts['error_compile_refused'], counts['error_compile'])}; "
        f"{counts['error_compile_writes']} of them because they write)"
    )
    print(
        f"runtime error scenarios: {counts['error_runtime_raised']}/{counts['error_runtime']} raised "
        f"({pct(counts['error_runtime_raised'], counts['error_runtime'])})"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("features", type=Path, help="the tck/features directory of an openCypher checkout")
    parser.add_argument("store", type=Path, help="a flatprint store (row scenarios need no graph, but a store)")
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--list-failures", action="store_true")
    args = parser.parse_args(argv)
    if not args.features.is_dir():
        print(f"error: {args.features}: not a directory", file=sys.stderr)
        return 2
    store = Store.open(args.store)
    try:
        run(args.features, store, args.timeout, args.list_failures)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
