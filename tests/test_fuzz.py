"""Fuzzing the Cypher engine and the server: no input may crash, hang or write.

Inputs come from two sources:

- a grammar-based generator of Cypher over the store's real labels, relationship types and
  properties (MATCH patterns, WHERE expressions, WITH/RETURN/ORDER BY/SKIP/LIMIT/UNWIND, functions,
  literals including odd strings and numbers);
- the neuprint-python / neuprintr corpus queries (``*-queries/*.cypher`` in the reference directory
  tests/reference.py finds; without it the corpus-based tests skip, saying why), mutated (spans
  deleted, duplicated, swapped or spliced from other queries, tokens and odd characters inserted,
  numbers replaced, deep nesting, truncation).

The same generator code runs on two backends: hypothesis (``st.data()`` draws, so a failure shrinks
to a small query) and a seeded ``random.Random`` (cheap, for volume). In-process, ≥ 10^5 inputs run
with a 1 s query limit and each must give a result or a flatprint ``QueryError``; over HTTPS 10^3
inputs (plus malformed bodies) must each give a 2xx or 4xx, and the server must still be alive. The
store file's sha256 must be the same afterwards. Run with ``-s`` to see counts and timings.
"""

from __future__ import annotations

import collections
import hashlib
import json
import random
import string
import time
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st
from reference import corpus_files, needs_reference
from server_fixture import running_server

from flatprint.cypher.engine import execute
from flatprint.errors import QueryError
from flatprint.store import Store

QUERY_LIMIT = 1.0  # seconds, the engine's timeout for every fuzz input (docs/decisions.md)
HANG = 10.0  # an input running this long counts as a hang (the limit is 1 s)
FUZZ_SEED, FUZZ_SCALE = 5, 0.001

# input counts: in-process total >= 10^5, over HTTPS >= 10^3
HYP_GENERATED = 500  # hypothesis-drawn grammar queries (shrinkable)
HYP_MUTATED = 1_200  # hypothesis-drawn mutations of corpus queries (shrinkable)
BULK_GENERATED = 5_000  # seeded-random grammar queries
BULK_MUTATED = 93_500  # seeded-random mutations of corpus queries
BULK_PROCESSES = 2  # the bulk runs use both cores: each process opens the store read-only
HTTP_INPUTS = 1_000

STATS: dict = collections.defaultdict(collections.Counter)
TIMES: dict = collections.defaultdict(float)
SLOWEST: dict = {}


def _corpus() -> list[str]:
    queries = []
    for path in corpus_files():
        text = path.read_text(errors="replace")
        first, _, rest = text.partition("\n")
        queries.append(rest if first.lstrip().startswith("//") else text)
    return queries


CORPUS = _corpus()


# ---------------------------------------------------------------------------------------------
# the grammar


NODE_LABELS = ["Neuron"] * 6 + [
    "Segment",
    "Synapse",
    "PreSyn",
    "PostSyn",
    "SynapseSet",
    "Meta",
    "Cell",
    "Element",
    "Mitochondrion",
    "`male-cns_Neuron`",
    "Nope",
]
REL_TYPES = ["ConnectsTo"] * 4 + ["Contains", "SynapsesTo", "CloseTo", "Unknown"]
SEGMENT_PROPS = [
    "bodyId",
    "type",
    "instance",
    "status",
    "statusLabel",
    "pre",
    "post",
    "upstream",
    "downstream",
    "somaLocation",
    "somaSide",
    "roiInfo",
    "size",
    "predictedNt",
    "class",
    "superclass",
    "group",
    "mancSerial",
    "`AL(R)`",
    "`GNG`",
    "FB",
    "nope",
    "`odd prop`",
]
SYNAPSE_PROPS = ["type", "confidence", "location", "ntGabaProb", "ntAcetylcholineProb", "`GNG`", "nope"]
REL_PROPS = ["weight", "weightHP", "roiInfo", "nope"]
META_PROPS = ["dataset", "primaryRois", "superLevelRois", "roiInfo", "totalPreCount", "neuronProperties", "nope"]
FUNCTIONS = {  # name -> plausible arities
    "count": (1,),
    "sum": (1,),
    "avg": (1,),
    "min": (1,),
    "max": (1,),
    "collect": (1,),
    "stdev": (1,),
    "stdevp": (1,),
    "size": (1,),
    "coalesce": (1, 2, 3),
    "keys": (1,),
    "properties": (1,),
    "id": (1,),
    "labels": (1,),
    "type": (1,),
    "nodes": (1,),
    "relationships": (1,),
    "length": (1,),
    "head": (1,),
    "last": (1,),
    "tail": (1,),
    "reverse": (1,),
    "range": (2, 3),
    "toString": (1,),
    "toInteger": (1,),
    "toFloat": (1,),
    "toBoolean": (1,),
    "toLower": (1,),
    "toUpper": (1,),
    "trim": (1,),
    "split": (2,),
    "replace": (3,),
    "substring": (2, 3),
    "left": (2,),
    "right": (2,),
    "abs": (1,),
    "round": (1,),
    "floor": (1,),
    "ceil": (1,),
    "sqrt": (1,),
    "log": (1,),
    "exp": (1,),
    "sign": (1,),
    "startNode": (1,),
    "endNode": (1,),
    "exists": (1,),
    "apoc.convert.fromJsonMap": (1,),
    "apoc.convert.fromJsonList": (1,),
    "apoc.convert.toJson": (1,),
    "apoc.map.removeKeys": (2,),
    "apoc.coll.containsDuplicates": (1,),
    "apoc.coll.toSet": (1,),
    "apoc.coll.flatten": (1,),
    "apoc.coll.sum": (1,),
    "apoc.coll.min": (1,),
    "apoc.coll.max": (1,),
    "apoc.meta.type": (1,),
    "noSuchFunction": (0, 1, 2),
    "rand": (0,),
}
BINARY_OPS = [
    "+",
    "-",
    "*",
    "/",
    "%",
    "^",
    "=",
    "<>",
    "<",
    ">",
    "<=",
    ">=",
    "AND",
    "OR",
    "XOR",
    "IN",
    "STARTS WITH",
    "ENDS WITH",
    "CONTAINS",
    "=~",
]
ODD_STRINGS = [
    "",
    " ",
    "'",
    '"',
    "\\",
    "\\\\",
    "\\'",
    "\\u0000",
    "\\n\\t",
    "\\uD800",
    "é",
    "日本語",
    "😀",
    "\u202e",
    "%s%n",
    "' OR 1=1 --",
    "'); DROP TABLE segments; --",
    "read_csv('/etc/passwd')",
    "${x}",
    "{{x}}",
    ".*",
    "(",
    "[a-",
    "a" * 300,
    "NaN",
    "null",
    "Dm895",
    "DNge104_R",
    "Traced",
    "AL(R)",
    "GNG",
    "\\r\\n",
    "/*",
    "*/",
    "//",
    "`",
]
ODD_NUMBERS = [
    "0",
    "-0",
    "1",
    "-1",
    "12781",
    "10910",
    "2147483648",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "99999999999999999999999",
    "0.5",
    "1e308",
    "1e309",
    "-1e-320",
    "0x1F",
    "0o17",
    "1.0E-3",
    ".5",
    "3.",
    "00012",
]


class RandomDraw:
    """Generator backend on random.Random."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def pick(self, seq):
        return seq[self.rng.randrange(len(seq))]

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p


class HypothesisDraw:
    """Generator backend on hypothesis' ``data.draw`` (so failures shrink)."""

    def __init__(self, data):
        self.data = data

    def pick(self, seq):
        return seq[self.data.draw(st.integers(0, len(seq) - 1))]

    def int(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def chance(self, p: float) -> bool:
        return self.data.draw(st.integers(0, 999)) < p * 1000


class Grammar:
    """Builds one random Cypher query; ``vars`` tracks the bound variables and their kinds."""

    def __init__(self, draw):
        self.d = draw
        self.vars: dict[str, str] = {}
        self.counter = 0

    def fresh(self, kind: str) -> str:
        self.counter += 1
        name = f"{kind[0].lower()}{self.counter}"
        self.vars[name] = kind
        return name

    # -- literals

    def string_literal(self) -> str:
        s = self.d.pick(ODD_STRINGS)
        quote = self.d.pick(["'", '"'])
        return quote + s.replace(quote, "\\" + quote) + quote

    def literal(self, depth: int) -> str:
        kind = self.d.int(0, 9)
        if kind <= 2:
            return self.d.pick(ODD_NUMBERS)
        if kind <= 4:
            return self.string_literal()
        if kind == 5:
            return self.d.pick(["null", "true", "false", "NULL", "TRUE"])
        if kind == 6 and depth > 0:
            return "[" + ", ".join(self.expr(depth - 1) for _ in range(self.d.int(0, 3))) + "]"
        if kind == 7 and depth > 0:
            keys = ["a", "bodyId", "`odd key`", "type"]
            return (
                "{" + ", ".join(f"{self.d.pick(keys)}: {self.expr(depth - 1)}" for _ in range(self.d.int(0, 2))) + "}"
            )
        if kind == 8:
            return "$" + self.d.pick(["p", "bodyIds", "x"])
        return str(self.d.int(-5, 20000))

    # -- expressions

    def prop_of(self, name: str) -> str:
        kind = self.vars[name]
        props = {"node:Synapse": SYNAPSE_PROPS, "rel": REL_PROPS, "node:Meta": META_PROPS}.get(kind, SEGMENT_PROPS)
        return f"{name}.{self.d.pick(props)}"

    def expr(self, depth: int = 2, aggregate: bool = False) -> str:
        names = [n for n in self.vars]
        choice = self.d.int(0, 13 if depth > 0 else 3)
        if choice <= 1 and names:
            return (
                self.prop_of(self.d.pick(names))
                if self.vars[names[0]] != "value" or self.d.chance(0.5)
                else self.d.pick(names)
            )
        if choice == 2 and names:
            return self.d.pick(names)
        if choice <= 3:
            return self.literal(depth)
        sub = depth - 1
        if choice <= 6:
            return f"({self.expr(sub)} {self.d.pick(BINARY_OPS)} {self.expr(sub)})"
        if choice == 7:
            name = self.d.pick(list(FUNCTIONS))
            if name in ("count", "sum", "avg", "min", "max", "collect", "stdev", "stdevp") and not aggregate:
                name = "size"
            arity = self.d.pick(FUNCTIONS[name])
            distinct = "DISTINCT " if aggregate and arity == 1 and self.d.chance(0.1) else ""
            return f"{name}({distinct}{', '.join(self.expr(sub) for _ in range(arity))})"
        if choice == 8:
            return self.d.pick(["NOT ", "-", "+"]) + f"({self.expr(sub)})"
        if choice == 9:
            return f"({self.expr(sub)} IS {self.d.pick(['', 'NOT '])}NULL)"
        if choice == 10:
            return f"CASE WHEN {self.expr(sub)} THEN {self.expr(sub)} ELSE {self.expr(sub)} END"
        if choice == 11:
            var = f"x{self.counter}"
            self.counter += 1
            self.vars[var] = "value"
            try:
                quant = self.d.pick(["", "ALL", "ANY", "NONE", "SINGLE"])
                lst = self.d.pick([f"range(0, {self.d.int(0, 20)})", self.expr(sub), "[1, 2, 3]", "['a', null]"])
                if quant:
                    return f"{quant}({var} IN {lst} WHERE {self.expr(sub)})"
                return f"[{var} IN {lst} WHERE {self.expr(sub)} | {self.expr(sub)}]"
            finally:
                del self.vars[var]
        if choice == 12:
            return f"{self.expr(sub)}[{self.expr(0)}{self.d.pick(['', '..' + self.expr(0)])}]"
        if names and self.vars.get(names[-1], "").startswith("node"):
            label = self.d.pick(NODE_LABELS)
            return f"({self.d.pick(names)}:{label})"
        return self.literal(0)

    # -- patterns

    def node(self, constrain: bool) -> str:
        label = self.d.pick(NODE_LABELS)
        kind = (
            "node:Synapse" if label in ("Synapse", "PreSyn", "PostSyn") else "node:Meta" if label == "Meta" else "node"
        )
        reuse = [n for n, k in self.vars.items() if k.startswith("node")]
        if reuse and self.d.chance(0.15):
            return f"({self.d.pick(reuse)})"
        name = self.fresh(kind) if self.d.chance(0.9) else ""
        props = ""
        small = label in ("Neuron", "`male-cns_Neuron`", "Meta", "Element", "Mitochondrion", "Nope")
        # big node sets (all segments, bodies or synapses) unconstrained only rarely: they mostly time out
        if constrain or (not small and not self.d.chance(0.02)) or self.d.chance(0.3):
            key, value = self.d.pick(
                [
                    ("bodyId", "12781"),
                    ("bodyId", "10910"),
                    ("bodyId", "-1"),
                    ("type", "'Dm895'"),
                    ("instance", "'DNge104_R'"),
                    ("status", "'Traced'"),
                    ("nope", "1"),
                ]
            )
            if self.d.chance(0.1):  # mismatched types and odd values (slower: filtered in Python)
                value = self.literal(0)
            props = f" {{{key}: {value}}}"
        return f"({name}:{label}{props})"

    def rel(self) -> str:
        kind = self.d.int(0, 9)
        name = self.fresh("rel") if self.d.chance(0.6) else ""
        rtype = self.d.pick(REL_TYPES)
        inner = f"{name}:{rtype}"
        if kind == 0:
            inner = f"{name}:ConnectsTo*{self.d.int(0, 2)}..{self.d.int(1, 2)}"
        elif kind == 1:
            inner += f" {{weight: {self.d.int(0, 10)}}}"
        arrow = self.d.pick(["-[{}]->", "<-[{}]-", "-[{}]-"])
        return arrow.format(inner)

    def pattern(self) -> str:
        if self.d.chance(0.05):
            a, b = self.node(True), self.node(True)
            fn = self.d.pick(["shortestPath", "allShortestPaths"])
            return f"p = {fn}({a}-[:ConnectsTo*]->{b})"
        parts = [self.node(constrain=self.d.chance(0.7))]
        for _ in range(self.d.int(0, 2)):
            parts.append(self.rel())
            parts.append(self.node(constrain=False))
        prefix = f"p{self.counter} = " if self.d.chance(0.1) else ""
        return prefix + "".join(parts)

    def items(self, aggregate: bool) -> str:
        items = []
        for i in range(self.d.int(1, 3)):
            e = self.expr(2, aggregate=aggregate)
            if aggregate and self.d.chance(0.3):
                e = f"{self.d.pick(['count', 'collect', 'sum', 'max'])}({e})"
            items.append(f"{e} AS c{i}")
        if self.d.chance(0.05):
            items.append("count(*) AS n")
        return ", ".join(items)

    def query(self) -> str:
        clauses = []
        if self.d.chance(0.9):
            optional = "OPTIONAL " if self.d.chance(0.1) else ""
            clauses.append(f"{optional}MATCH " + ", ".join(self.pattern() for _ in range(self.d.int(1, 2))))
            if self.d.chance(0.6):
                clauses.append("WHERE " + self.expr(2))
        if self.d.chance(0.3):
            var = self.fresh("value")
            clauses.append(f"UNWIND {self.d.pick([self.expr(1), 'range(1, 5)', '[1, null, 2]'])} AS {var}")
        if self.d.chance(0.3):
            keep = list(self.vars)
            items = ", ".join(keep) if keep and self.d.chance(0.5) else self.items(aggregate=self.d.chance(0.3))
            distinct = "DISTINCT " if self.d.chance(0.2) else ""
            clauses.append(f"WITH {distinct}{items if items else '1 AS one'}")
            if not (keep and items == ", ".join(keep)):
                self.vars = {f"c{i}": "value" for i in range(3)} if "c0" in items else {}
                if "count(*) AS n" in items:
                    self.vars["n"] = "value"
            if self.d.chance(0.3):
                clauses.append("WHERE " + self.expr(1))
        distinct = "DISTINCT " if self.d.chance(0.1) else ""
        ret = "*" if self.vars and self.d.chance(0.05) else self.items(aggregate=self.d.chance(0.3))
        clauses.append(f"RETURN {distinct}{ret}")
        if self.d.chance(0.3):
            clauses.append("ORDER BY " + self.d.pick(["c0", "c0 DESC", self.expr(1)]))
        if self.d.chance(0.1):
            clauses.append(f"SKIP {self.d.pick(['0', '2', '-1', '$p', '1.5'])}")
        clauses.append(f"LIMIT {self.d.pick(['5', '20', '1', '0', '100'])}" if self.d.chance(0.95) else "")
        text = " ".join(c for c in clauses if c)
        if self.d.chance(0.03):
            text = text + " UNION " + ("ALL " if self.d.chance(0.5) else "") + text
        return text


# ---------------------------------------------------------------------------------------------
# mutations of corpus queries


TOKENS = [
    "MATCH",
    "WHERE",
    "RETURN",
    "WITH",
    "UNWIND",
    "AS",
    "ORDER BY",
    "LIMIT",
    "SKIP",
    "DISTINCT",
    "OPTIONAL MATCH",
    "UNION",
    "CALL",
    "YIELD",
    "CREATE",
    "DELETE",
    "SET",
    "MERGE",
    "LOAD CSV FROM",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    ":",
    "-",
    "->",
    "<-",
    "*",
    "|",
    "=",
    "$",
    "`",
    "'",
    '"',
    "\\",
    "/*",
    "//",
    "\n",
    "\t",
    "\x00",
    "\ud800",
    "é",
    "😀",
    "NULL",
    "true",
    "count(*)",
    "n.bodyId",
    "(n:Neuron)",
    "-[:ConnectsTo]->",
    "*1..",
    "..",
    "0",
    "-1",
    "1e999",
    "9223372036854775808",
    "apoc.cypher.runTimeboxed(",
    "db.labels()",
    "exists(",
    "CASE",
    "END",
    "shortestPath(",
    "IS NULL",
    "=~",
    "'.*'",
    "[x IN",
    "|",
    "reduce(",
    "::",
    ";",
    "\u202e",
]


def mutate(text: str, rng: random.Random) -> str:
    """1-4 random edits of a query's text."""
    for _ in range(rng.randint(1, 4)):
        n = len(text)
        i = rng.randrange(n + 1)
        j = min(n, i + rng.randint(0, 20))
        op = rng.randrange(11)
        if op == 0:  # delete a span
            text = text[:i] + text[j:]
        elif op == 1:  # duplicate a span
            text = text[:j] + text[i:j] + text[j:]
        elif op == 2:  # insert a token
            text = text[:i] + " " * rng.randint(0, 1) + rng.choice(TOKENS) + text[i:]
        elif op == 3:  # replace a character
            ch = rng.choice(
                [
                    "\x00",
                    "'",
                    '"',
                    "`",
                    "\\",
                    "(",
                    ")",
                    "[",
                    "]",
                    "{",
                    "}",
                    "$",
                    "\ud800",
                    "é",
                    "\n",
                    rng.choice(string.printable),
                ]
            )
            text = text[:i] + ch + text[i + 1 :]
        elif op == 4:  # swap two spans
            k = rng.randrange(n + 1)
            a, b = sorted((i, k))
            text = text[:a] + text[j:] if a == b else text[b:] + text[a:b] + text[:a]
        elif op == 5:  # truncate
            text = text[:i]
        elif op == 6:  # replace a number
            digits = [m for m in range(n) if text[m].isdigit()]
            if digits:
                m = rng.choice(digits)
                text = text[:m] + rng.choice(ODD_NUMBERS) + text[m + 1 :]
        elif op == 7:  # nesting (test_deep_nesting goes deeper, once per depth)
            depth = rng.choice([3, 10, 50, 200])
            opener, closer = rng.choice(
                [("(", ")"), ("[", "]"), ("{", "}"), ("NOT ", ""), ("-", ""), ("[x IN ", " | x]")]
            )
            text = text[:i] + opener * depth + text[i:j] + closer * depth + text[j:]
        elif op == 8:  # splice in a piece of another corpus query
            other = rng.choice(CORPUS)
            a = rng.randrange(len(other) + 1)
            text = text[:i] + other[a : a + rng.randint(1, 60)] + text[j:]
        elif op == 9:  # change case
            text = text[:i] + text[i:j].swapcase() + text[j:]
        else:  # replace a string literal's content with an odd string
            q = text.find("'", i)
            if q >= 0:
                end = text.find("'", q + 1)
                if end > q:
                    text = text[: q + 1] + rng.choice(ODD_STRINGS) + text[end:]
    return text


# ---------------------------------------------------------------------------------------------
# running inputs


@pytest.fixture(scope="module")
def fuzz_store_path(store_factory):
    return store_factory(FUZZ_SEED, FUZZ_SCALE)


@pytest.fixture(scope="module")
def store_digest(fuzz_store_path):
    return _sha256(fuzz_store_path), sorted(p.name for p in fuzz_store_path.parent.iterdir())


@pytest.fixture(scope="module")
def store(fuzz_store_path, store_digest):
    s = Store.open(fuzz_store_path)
    yield s
    s.close()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_one(store, text: str, source: str) -> None:
    """Run one input in-process: a result or a QueryError, within the hang bound."""
    started = time.perf_counter()
    try:
        execute(store, text, timeout=QUERY_LIMIT)
        outcome = "ok"
    except QueryError as exc:
        outcome = type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - that is what the fuzzer looks for
        raise AssertionError(f"{source}: engine crash {type(exc).__name__}: {exc}\nquery: {text!r}") from exc
    seconds = time.perf_counter() - started
    STATS[source][outcome] += 1
    TIMES[source] += seconds
    if seconds > SLOWEST.get(source, (0.0, ""))[0]:
        SLOWEST[source] = (seconds, text[:200])
    assert seconds < HANG, f"{source}: input ran {seconds:.1f} s (limit {QUERY_LIMIT} s): {text!r}"


HYP = settings(deadline=None, database=None, derandomize=True, print_blob=True, suppress_health_check=list(HealthCheck))


def test_grammar_examples_are_mostly_valid(store):
    """The generator is useful only if many of its queries get past the parser and run."""
    rng = random.Random(0)
    outcomes = collections.Counter()
    for _ in range(300):
        text = Grammar(RandomDraw(rng)).query()
        try:
            execute(store, text, timeout=QUERY_LIMIT)
            outcomes["ok"] += 1
        except QueryError as exc:
            outcomes[type(exc).__name__] += 1
    print(f"\ngrammar sample outcomes: {dict(outcomes)}")
    assert outcomes["ok"] >= 60, outcomes


@settings(HYP, max_examples=HYP_GENERATED)
@given(st.data())
def test_hypothesis_generated_queries(store, data):
    text = Grammar(HypothesisDraw(data)).query()
    run_one(store, text, "hypothesis-grammar")


@needs_reference
@settings(HYP, max_examples=HYP_MUTATED)
@given(index=st.integers(0, max(len(CORPUS) - 1, 0)), seed=st.integers(0, 2**32 - 1))
def test_hypothesis_mutated_corpus(store, index, seed):
    run_one(store, mutate(CORPUS[index], random.Random(seed)), "hypothesis-mutated")


def _bulk_chunk(store_path: str, kind: str, seed: int, count: int) -> tuple:
    """Run ``count`` seeded inputs in a worker process; returns (stats, seconds, slowest, failures)."""
    rng = random.Random(seed)
    STATS.pop(kind, None), TIMES.pop(kind, None), SLOWEST.pop(kind, None)  # a worker runs several chunks
    store = Store.open(store_path)
    failures = []
    try:
        for _ in range(count):
            text = Grammar(RandomDraw(rng)).query() if kind == "grammar" else mutate(rng.choice(CORPUS), rng)
            try:
                run_one(store, text, kind)
            except AssertionError as exc:
                failures.append(str(exc)[:2000])
                if len(failures) >= 10:
                    break
    finally:
        store.close()
    return dict(STATS[kind]), TIMES[kind], SLOWEST.get(kind, (0.0, "")), failures


def _bulk(fuzz_store_path, kind: str, total: int, base_seed: int) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    chunks = 4 * BULK_PROCESSES
    sizes = [total // chunks + (1 if i < total % chunks else 0) for i in range(chunks)]
    source = f"bulk-{kind}"
    failures = []
    started = time.perf_counter()
    with ProcessPoolExecutor(BULK_PROCESSES, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_bulk_chunk, str(fuzz_store_path), kind, base_seed + i, n) for i, n in enumerate(sizes)]
        for future in futures:  # a worker that dies (a hard crash) raises BrokenProcessPool here
            stats, seconds, slowest, failed = future.result()
            STATS[source].update(stats)
            TIMES[source] += seconds
            if slowest[0] > SLOWEST.get(source, (0.0, ""))[0]:
                SLOWEST[source] = slowest
            failures += failed
    print(f"\n{source}: {sum(STATS[source].values())} inputs, {time.perf_counter() - started:.1f} s wall")
    assert not failures, "\n\n".join(failures)
    assert sum(STATS[source].values()) == total


def test_bulk_generated_queries(fuzz_store_path, store_digest):
    _bulk(fuzz_store_path, "grammar", BULK_GENERATED, 20261130)


@needs_reference
def test_bulk_mutated_corpus(fuzz_store_path, store_digest):
    _bulk(fuzz_store_path, "mutated", BULK_MUTATED, 1130)


@pytest.mark.parametrize("depth", [100, 1000, 20_000])
def test_deep_nesting(store, depth):
    for opener, closer in [
        ("(", ")"),
        ("[", "]"),
        ("{a: ", "}"),
        ("NOT ", ""),
        ("-", ""),
        ("[x IN ", " | x]"),
        ("CASE WHEN true THEN ", " END"),
        ("size(", ")"),
    ]:
        run_one(store, "RETURN " + opener * depth + "1" + closer * depth + " AS x", "deep-nesting")
        run_one(
            store,
            "MATCH (n:Neuron) WHERE " + opener * depth + "n.bodyId > 0" + closer * depth + " RETURN n.bodyId LIMIT 1",
            "deep-nesting",
        )


@needs_reference
def test_corpus_itself(store):
    for text in CORPUS:
        run_one(store, text, "corpus")


# ---------------------------------------------------------------------------------------------
# over HTTPS


def _http_inputs(n: int):
    rng = random.Random(77)
    for i in range(n):
        if i % 2 or not CORPUS:  # without the corpus, all inputs come from the grammar
            yield {"cypher": Grammar(RandomDraw(rng)).query()}
        else:
            yield {"cypher": mutate(rng.choice(CORPUS), rng)}


ODD_BODIES = [
    b"",
    b"{",
    b"[]",
    b"null",
    b'{"cypher": 5}',
    b'{"cypher": ""}',
    b'{"cypher": null}',
    b'{"cypher": ["MATCH (n) RETURN n"]}',
    b"\xff\xfe\x00garbage",
    b'{"cypher": "\xff\xfe"}',
    b'{"cypher": "MATCH (n:Neuron) RETURN n.bodyId LIMIT 1", "dataset": "nope"}',
    b'{"cypher": "MATCH (n:Neuron) RETURN n.bodyId LIMIT 1", "dataset": 5}',
    b'{"cypher": "RETURN \'\\u0000\\ud800\'"}',
    b'{"cypher": "RETURN 1"' + b" " * 100000 + b"}",
    json.dumps({"cypher": "RETURN '" + "x" * 1_000_000 + "' AS big"}).encode(),
    json.dumps({"cypher": "(" * 20000}).encode(),
]


def test_fuzz_over_https(fuzz_store_path, store_digest, tmp_path):
    counts = collections.Counter()
    slowest = (0.0, "")
    started = time.perf_counter()
    with running_server([str(fuzz_store_path)], tmp_path / "home", "--timeout", str(QUERY_LIMIT)) as (url, cert):
        session = requests.Session()  # verify= on each call: REQUESTS_CA_BUNDLE would override session.verify
        bodies = [json.dumps(b).encode() for b in _http_inputs(HTTP_INPUTS)] + ODD_BODIES
        for body in bodies:
            t = time.perf_counter()
            try:
                r = session.post(
                    f"{url}/api/custom/custom",
                    data=body,
                    timeout=30,
                    verify=str(cert),
                    headers={"Content-Type": "application/json", "Authorization": "Bearer x"},
                )
            except requests.RequestException as exc:
                raise AssertionError(f"no answer ({type(exc).__name__}: {exc}) to {body[:300]!r}") from exc
            seconds = time.perf_counter() - t
            slowest = max(slowest, (seconds, body[:200].decode(errors="replace")))
            counts[r.status_code] += 1
            assert 200 <= r.status_code < 500, f"{r.status_code} {r.text[:500]} for {body[:300]!r}"
            if r.status_code >= 400:
                assert "error" in r.json()
            assert seconds < HANG, f"{seconds:.1f} s for {body[:300]!r}"
        # still alive and answering correctly
        r = session.post(
            f"{url}/api/custom/custom",
            json={"cypher": "MATCH (n:Neuron) RETURN count(n)"},
            timeout=30,
            verify=str(cert),
        )
        assert r.status_code == 200 and r.json()["data"][0][0] > 0
    total = sum(counts.values())
    print(
        f"\nHTTPS fuzz: {total} requests in {time.perf_counter() - started:.1f} s, statuses {dict(counts)}, "
        f"slowest {slowest[0]:.2f} s"
    )
    assert total >= HTTP_INPUTS


def test_store_unchanged_and_report(fuzz_store_path, store_digest):
    digest, files = store_digest
    assert _sha256(fuzz_store_path) == digest, "the store file changed during fuzzing"
    assert sorted(p.name for p in fuzz_store_path.parent.iterdir()) == files, "files appeared next to the store"
    total = 0
    for source, outcomes in STATS.items():
        n = sum(outcomes.values())
        total += n
        print(
            f"\n{source}: {n} inputs in {TIMES[source]:.1f} s, outcomes {dict(outcomes.most_common(8))}; "
            f"slowest {SLOWEST[source][0]:.2f} s: {SLOWEST[source][1]!r}"
        )
    print(f"\nin-process total: {total} inputs")
    if len(STATS) >= 5:  # the whole file ran (not a -k selection)
        assert total >= 100_000
