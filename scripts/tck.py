"""Measure the Cypher engine against the openCypher TCK (Technology Compatibility Kit).

    python scripts/tck.py PATH/TO/openCypher/tck/features TEMPLATE.duckdb [--timeout 30]
        [--list-failures] [--by-area] [--by-feature]

The TCK is not part of this repository: pass the path of its ``tck/features`` directory from a
checkout of the openCypher repository. TEMPLATE is any flatprint store: only its table layout is
used, to build the small stores the scenarios run on (it is not modified).

Every scenario falls in one class, and each class is counted:

- error scenarios expecting an error at compile time: passed when ``parse`` + ``analyze`` refuse
  the query (nothing runs); of those that may fail "at any time", the ones the analyzer accepts
  are run and counted apart when they raise; scenarios expecting a runtime error: passed when ``execute`` raises
  on the scenario's graph (out of reach when that graph cannot be built, as below);
- row scenarios whose query under test writes (CREATE, MERGE, SET, DELETE, REMOVE): left out, the
  engine is read-only; row scenarios about temporal values: left out, the engine has no temporal
  types;
- the remaining row scenarios, the *read-only non-temporal* ones, split by their graph:
  *graph-less* ones (``an empty graph`` / ``any graph``, no setup) run on an empty store; ones
  whose setup (``having executed``) creates a graph run on a store built from the setup's CREATE
  statements when flatprint's graph model can hold that graph (nodes without labels and without
  relationships: each becomes a ``segments`` row, each property a column); the rest are counted as
  out of reach, by reason (labels or relationship types outside the connectome's fixed schema,
  named graphs, procedures the kit's own harness registers, setups that are not plain CREATEs).

Expected cells are read as Cypher literals; a node cell ``({num: 1})`` (also in a list, or a path
of length 0, ``<()>``) is compared with the node's property map without ``bodyId`` (the key every
stored node has, invented by the loader); cells with labels or relationships cannot be compared
and fail. Columns are matched by name, as the
kit's own harness does. Prints counts and percentages; exit status 0 (a measurement, not a test).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import duckdb

from flatprint.cypher.analyzer import analyze
from flatprint.cypher.engine import execute
from flatprint.cypher.errors import CypherError, CypherWriteError
from flatprint.cypher.evaluator import Evaluator
from flatprint.cypher.parser import parse, parse_expression
from flatprint.errors import QueryError
from flatprint.store import Store

# ---- reading feature files ------------------------------------------------------------------


def scenarios(path: Path):
    """(name, steps) per scenario of a feature file; outlines expanded over their Examples, the
    feature's Background steps put first."""
    lines = path.read_text().splitlines()
    blocks, current, background = [], None, []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        if stripped.startswith(("Scenario:", "Scenario Outline:")):
            current = [stripped]
            blocks.append(current)
        elif stripped.startswith("Background:"):
            current = background
        elif current is not None:
            current.append(line)
    for block in blocks:
        name, body = block[0], background + block[1:]
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
    r"""A Gherkin table row's cells: ``|`` separates, ``\|`` and ``\\`` are escapes."""
    cells, current, i, text = [], [], 0, row.strip()
    text = text[1:] if text.startswith("|") else text
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in "|\\n":
            current.append({"|": "|", "\\": "\\", "n": "\n"}[text[i + 1]])
            i += 2
            continue
        if char == "|":
            cells.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        i += 1
    if "".join(current).strip():
        cells.append("".join(current).strip())
    return cells


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


# ---- expected values ------------------------------------------------------------------------


class ExpectedNode:
    """A node cell of an expected table: compared by its property map."""

    def __init__(self, properties: dict):
        self.properties = properties


class NotComparable(Exception):
    """An expected cell holding a relationship or a path (flatprint returns them as maps and lists)."""


_NODE = r"\(\s*(\{[^()]*\})?\s*\)"  # a node without labels: ``()``, ``({num: 1})``


def _node(text: str) -> ExpectedNode:
    found = re.fullmatch(_NODE, text.strip(), re.S)
    return ExpectedNode(Evaluator({})(parse_expression(found.group(1)), {}) if found.group(1) else {})


def expected_value(cell: str):
    cell = cell.strip()
    if re.fullmatch(_NODE, cell, re.S):
        return _node(cell)
    if re.fullmatch(rf"<{_NODE}>", cell, re.S):  # a path of length 0: flatprint returns [node]
        return [_node(cell[1:-1])]
    if re.fullmatch(rf"\[\s*{_NODE}(\s*,\s*{_NODE})*\s*\]", cell, re.S):  # a list of nodes
        return [_node(part) for part in re.findall(r"\([^()]*\)", cell)]
    if cell.startswith(("(", "<", "[:")) or re.search(r"\(:|\[:|<\(|\(\{|\(\)", cell):
        raise NotComparable(cell)
    return Evaluator({})(parse_expression(cell), {})


def same(a, b, unordered_lists: bool) -> bool:
    """``a`` (a result value) equals ``b`` (an expected value)."""
    if isinstance(b, ExpectedNode):
        return isinstance(a, dict) and same(
            {k: v for k, v in a.items() if k != "bodyId"}, b.properties, unordered_lists
        )
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


# ---- building a store for a scenario's graph --------------------------------------------------


class OutOfReach(Exception):
    """The scenario's graph cannot be held by flatprint's graph model; the message says why."""


_TYPE_OF = {bool: "BOOLEAN", int: "BIGINT", float: "DOUBLE", str: "VARCHAR"}


def setup_nodes(texts: list[str]) -> list[dict]:
    """The property maps of the nodes the setup statements create.

    Understood: ``[UNWIND list AS x] CREATE (..), (..) [CREATE ...]`` of nodes without labels.
    Anything else raises :class:`OutOfReach` naming what the graph model cannot hold."""
    nodes: list[dict] = []
    for text in texts:
        text = text.strip()
        bindings = [{}]
        unwind = re.match(r"UNWIND\s+(.+?)\s+AS\s+(\w+)\s+(?=CREATE\b)", text, re.S | re.I)
        if unwind:
            values = Evaluator({})(parse_expression(unwind.group(1)), {})
            bindings = [{unwind.group(2): v} for v in values]
            text = text[unwind.end() :]
        for binding in bindings:
            try:
                _create_nodes(text, binding, nodes)
            except (CypherError, QueryError) as exc:
                raise OutOfReach(f"setup expression outside a literal map ({exc})") from None
    return nodes


def _create_nodes(text: str, binding: dict, nodes: list[dict]) -> None:
    i, named = 0, set()
    while True:
        i = _skip_space(text, i)
        if i >= len(text):
            return
        keyword = re.match(r"CREATE\b|,", text[i:], re.I)
        if not keyword:
            word = re.match(r"\w+", text[i:])
            raise OutOfReach(f"setup clause {word.group(0).upper() if word else text[i : i + 10]!r}")
        i = _skip_space(text, i + keyword.end())
        if text[i : i + 1] != "(":
            raise OutOfReach("setup pattern that is not a node")
        node = re.match(r"\(\s*(\w*)\s*((?::\s*`?\w+`?\s*)*)", text[i:])
        if node.group(2).strip():
            raise OutOfReach("labels (the graph model's labels are the connectome's)")
        i += node.end()
        properties = {}
        if text[i : i + 1] == "{":
            end = _balanced(text, i)
            properties = Evaluator({})(parse_expression(text[i:end]), binding)
            i = _skip_space(text, end)
        if text[i : i + 1] != ")":
            raise OutOfReach("setup pattern that is not a node")
        i = _skip_space(text, i + 1)
        if text[i : i + 1] in ("-", "<"):
            raise OutOfReach("relationships (the graph model's relationship types are the connectome's)")
        name = node.group(1)
        if name and name in named:
            continue  # a node created earlier in the statement, named again
        if name:
            named.add(name)
        nodes.append({k: v for k, v in properties.items() if v is not None})


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _balanced(text: str, i: int) -> int:
    """The index after the brace that closes the one at ``i`` (quotes skipped)."""
    depth, quote = 0, None
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise OutOfReach("unbalanced setup map")


def _column_type(name: str, values: list) -> str:
    kinds = set()
    for value in values:
        if isinstance(value, list):
            inner = {type(v) for v in value}
            if len(inner) > 1 or inner & {list, dict, type(None)}:
                raise OutOfReach(f"property {name} holds a list of mixed values")
            kinds.add(("list", inner.pop() if inner else None))
        elif type(value) in _TYPE_OF:
            kinds.add((type(value), None))
        else:
            raise OutOfReach(f"property {name} holds a {type(value).__name__}")
    if len({k for k in kinds if k != ("list", None)}) > 1 or (len(kinds) > 1 and ("list", None) not in kinds):
        raise OutOfReach(f"property {name} holds values of several types (a store column has one)")
    concrete = [k for k in kinds if k != ("list", None)]
    kind, inner = concrete[0] if concrete else ("list", str)
    return f"{_TYPE_OF[inner]}[]" if kind == "list" else _TYPE_OF[kind]


def build_store(template: Store, path: Path, nodes: list[dict]) -> Path:
    """A store with ``template``'s tables, empty, but for ``segments``: one row per node."""
    columns: dict[str, list] = defaultdict(list)
    for node in nodes:
        for key, value in node.items():
            columns[key].append(value)
    if {"bodyId", "is_neuron"} & set(columns):
        raise OutOfReach("a property named like a store column (bodyId, is_neuron)")
    types = {name: _column_type(name, values) for name, values in columns.items()}
    con = duckdb.connect(str(path))
    try:
        con.execute("BEGIN")  # one commit: a store is built in ~0.1 s rather than one write per table
        cur = template.cursor()
        for table in sorted(template.tables):
            if table == "segments":
                extra = "".join(f", {_ident(n)} {t}" for n, t in types.items())
                con.execute(f"CREATE TABLE segments (bodyId BIGINT, is_neuron BOOLEAN{extra})")
                continue
            layout = ", ".join(f"{_ident(n)} {t}" for n, t, *_ in cur.execute(f"DESCRIBE {table}").fetchall())
            con.execute(f"CREATE TABLE {table} ({layout})")
            if table in ("meta", "store_info"):
                con.executemany(f"INSERT INTO {table} VALUES (?, ?)", cur.execute(f"SELECT * FROM {table}").fetchall())
        names = list(types)
        rows = [[body, False, *(node.get(n) for n in names)] for body, node in enumerate(nodes, start=1)]
        if rows:
            con.executemany(f"INSERT INTO segments VALUES ({', '.join('?' * (len(names) + 2))})", rows)
        con.execute("COMMIT")
    finally:
        con.close()
    return path


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---- classifying and running ------------------------------------------------------------------

WRITES = re.compile(r"\b(CREATE|MERGE|SET|DELETE|REMOVE)\b", re.I)
TEMPORAL = re.compile(r"\b(date|datetime|localdatetime|localtime|time|duration)\s*(\.\s*\w+\s*)?\(", re.I)


class Run:
    def __init__(self, template: Store, scratch: Path, timeout: float):
        self.template, self.scratch, self.timeout = template, scratch, timeout
        self.stores: dict[tuple, Store | OutOfReach] = {}
        self.counts: Counter = Counter()
        self.by_feature: dict[str, Counter] = defaultdict(Counter)  # clauses/match/Match1 -> counts
        self.by_area: dict[str, Counter] = defaultdict(Counter)  # clauses/match -> counts
        self.failures: list[tuple[str, str]] = []

    def store_for(self, setups: list[str]) -> Store:
        key = tuple(setups)
        if key not in self.stores:
            try:
                nodes = setup_nodes(setups)
                path = build_store(self.template, self.scratch / f"graph{len(self.stores)}.duckdb", nodes)
                self.stores[key] = Store.open(path)
            except OutOfReach as exc:
                self.stores[key] = exc
        found = self.stores[key]
        if isinstance(found, OutOfReach):
            raise found
        return found

    def close(self):
        for store in self.stores.values():
            if isinstance(store, Store):
                store.close()

    def count(self, feature: str, what: str) -> None:
        self.counts[what] += 1
        self.by_feature[feature][what] += 1
        self.by_area[feature.rsplit("/", 1)[0]][what] += 1

    def scenario(self, path: Path, name: str, steps) -> None:  # noqa: C901 - one decision per class
        feature = str(path.relative_to(self.features).with_suffix(""))
        query = next((doc for t, doc, _ in steps if t.startswith("When executing query")), None)
        then = next((s for s in steps if s[0].startswith("Then")), None)
        if query is None or then is None:
            return
        params = {}
        for t, _, table in steps:
            if t.startswith("And parameters are"):
                params = {row[0]: expected_value(row[1]) for row in table}
        setups = [doc for t, doc, _ in steps if t.startswith("And having executed")]
        named_graph = any(t.startswith("Given the") and "graph" in t for t, _, _ in steps)
        procedure = any("there exists a procedure" in t for t, _, _ in steps)
        text, _, table = then
        error = re.match(r"Then an? (\w+) should be raised at (compile time|runtime|any time)", text)
        if error and error.group(2) in ("compile time", "any time"):
            self.count(feature, "error_compile")
            try:
                analyze(parse(query))
                if error.group(2) == "any time" and self.raises_at_runtime(query, params, setups):
                    self.count(feature, "error_anytime_raised")  # counted apart: it ran
                else:
                    self.failures.append(("accepted", name))
            except CypherWriteError:  # refused, but for writing rather than for what the scenario tests
                self.count(feature, "error_compile_refused")
                self.count(feature, "error_compile_writes")
            except CypherError:
                self.count(feature, "error_compile_refused")
            return
        if error:
            self.count(feature, "error_runtime")
            try:
                if named_graph or procedure:
                    raise OutOfReach("named graph or procedure")
                store = self.store_for(setups)
            except OutOfReach:  # on another graph the query may find no row to fail on
                self.count(feature, "error_runtime_out_of_reach")
                return
            try:
                execute(store, query, timeout=self.timeout, params=params)
                self.failures.append(("no runtime error", name))
            except QueryError:
                self.count(feature, "error_runtime_raised")
            return
        if WRITES.search(query):
            self.count(feature, "rows_writes")
            return
        if (
            feature.startswith("expressions/temporal")
            or TEMPORAL.search(query)
            or TEMPORAL.search(" ".join(map(str, table)))
        ):
            self.count(feature, "rows_temporal")
            return
        graph = "setup" if setups or named_graph or procedure else "graphless"
        self.count(feature, f"rows_{graph}")
        try:
            if named_graph:
                raise OutOfReach("named graph (built from labelled nodes and relationships)")
            if procedure:
                raise OutOfReach("procedure registered by the kit's harness")
            store = self.store_for(setups)
        except OutOfReach as exc:
            self.count(feature, "rows_out_of_reach")
            self.counts[f"out of reach: {exc}"] += 1
            return
        if graph == "setup":
            self.count(feature, "rows_setup_loaded")
        ok, why = self.rows(store, query, params, text, table)
        if ok:
            self.count(feature, f"rows_{graph}_passed")
        else:
            self.failures.append((why, name))

    def raises_at_runtime(self, query, params, setups) -> bool:
        try:
            store = self.store_for(setups)
        except OutOfReach:
            return False
        try:
            execute(store, query, timeout=self.timeout, params=params)
        except QueryError:
            return True
        return False

    def rows(self, store, query, params, text, table) -> tuple[bool, str]:
        try:
            want = [[expected_value(c) for c in row] for row in table[1:]] if table else []
        except NotComparable as exc:
            return False, f"expected cell not comparable: {exc}"
        try:
            result = execute(store, query, timeout=self.timeout, params=params)
        except QueryError as exc:
            return False, f"error: {exc}"
        if "empty" in text:
            return not result.data, f"rows {result.columns} {result.data[:3]}"
        header = table[0] if table else []
        if sorted(result.columns) != sorted(header):
            return False, f"columns {result.columns}, expected {header}"
        at = [result.columns.index(c) for c in header]
        got = [[row[i] for i in at] for row in result.data]
        ok = rows_match(got, want, "in order" in text, "ignoring element order" in text)
        return ok, f"rows {result.columns} {result.data[:3]}"

    def run(self, features: Path) -> None:
        self.features = features
        for path in sorted(features.rglob("*.feature")):
            for name, steps in scenarios(path):
                self.scenario(path, name, steps)


def pct(a, b):
    return f"{100 * a / b:.1f} %" if b else "n/a"


def report(run: Run, tables: list[str]) -> None:
    c = run.counts
    graphless, setup = c["rows_graphless"], c["rows_setup"]
    passed = c["rows_graphless_passed"] + c["rows_setup_passed"]
    print(
        f"row scenarios: {graphless + setup + c['rows_writes'] + c['rows_temporal']}; left out: "
        f"{c['rows_writes']} write, {c['rows_temporal']} temporal"
    )
    print(
        f"read-only non-temporal row scenarios: {passed}/{graphless + setup} passed ({pct(passed, graphless + setup)})"
    )
    print(
        f"  graph-less: {c['rows_graphless_passed']}/{graphless} passed ({pct(c['rows_graphless_passed'], graphless)})"
    )
    print(
        f"  with a setup graph: {c['rows_setup_passed']}/{setup} passed ({pct(c['rows_setup_passed'], setup)}); "
        f"{c['rows_setup_loaded']} loaded into a store, of which {c['rows_setup_passed']} passed "
        f"({pct(c['rows_setup_passed'], c['rows_setup_loaded'])}); {c['rows_out_of_reach']} out of reach:"
    )
    for key, n in sorted(((k, n) for k, n in c.items() if k.startswith("out of reach: ")), key=lambda kv: -kv[1]):
        print(f"    {n:4d}  {key[len('out of reach: ') :]}")
    print(
        f"compile-time error scenarios: {c['error_compile_refused']}/{c['error_compile']} refused "
        f"before running ({pct(c['error_compile_refused'], c['error_compile'])}; "
        f"{c['error_compile_writes']} of them because they write); of the rest, {c['error_anytime_raised']} "
        "expecting an error 'at any time' raise it when run"
    )
    runnable = c["error_runtime"] - c["error_runtime_out_of_reach"]
    print(
        f"runtime error scenarios: {c['error_runtime_raised']}/{runnable} raised "
        f"({pct(c['error_runtime_raised'], runnable)}); {c['error_runtime_out_of_reach']} more out of reach "
        "(their setup graph cannot be built)"
    )
    for table in tables:
        groups = run.by_feature if table == "feature" else run.by_area
        print(f"\n| {table} | graph-less rows | setup rows (loaded) | compile-time errors refused |")
        print("|---|---|---|---|")
        for key, f in sorted(groups.items()):
            print(
                f"| {key} | {f['rows_graphless_passed']}/{f['rows_graphless']} "
                f"| {f['rows_setup_passed']}/{f['rows_setup']} ({f['rows_setup_loaded']}) "
                f"| {f['error_compile_refused']}/{f['error_compile']} |"
            )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("features", type=Path, help="the tck/features directory of an openCypher checkout")
    parser.add_argument("template", type=Path, help="a flatprint store whose table layout the scenario stores copy")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per query (default 30)")
    parser.add_argument("--list-failures", action="store_true")
    parser.add_argument("--by-feature", action="store_true", help="a table of pass counts per feature file")
    parser.add_argument("--by-area", action="store_true", help="a table of pass counts per feature directory")
    args = parser.parse_args(argv)
    if not args.features.is_dir():
        print(f"error: {args.features}: not a directory", file=sys.stderr)
        return 2
    template = Store.open(args.template)
    with tempfile.TemporaryDirectory(prefix="flatprint-tck-") as scratch:
        run = Run(template, Path(scratch), args.timeout)
        try:
            run.run(args.features)
        finally:
            run.close()
            template.close()
    if args.list_failures:
        for why, name in run.failures:
            print(f"FAIL {name}: {why[:200]}")
    report(run, [t for t, wanted in (("area", args.by_area), ("feature", args.by_feature)) if wanted])
    return 0


if __name__ == "__main__":
    sys.exit(main())
