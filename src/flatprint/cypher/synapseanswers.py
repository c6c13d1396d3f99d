"""Answering a :class:`~flatprint.cypher.synapseplan.SynapseShape` from the synapse layout directly.

fetch_synapse_connections' query reads the ``partners`` rows between the two ends' bodies and their
two ends' ``synapses`` rows by id; fetch_synapses' reads its bodies' ``synapses`` rows (both through
flatprint.store.partners, as the library's calls do: literal body lists and id ranges, so zone maps
skip the rest). The ends' bodies: listed body ids need no SQL for neurons (the neuron ids in RAM);
other conditions on an end run as one SQL query of that end alone (the planner's and sqlgen's own
rendering, so their meaning is the SQL step's). Weight tests count the pair's partners rows (ingest
sums ``connections.weight`` from the same rows); synapse tests are NumPy over the columns read.

The answer is then built as the SQL step's column-wise answer is (flatprint.cypher.columnar): the
same Arrow column types, synapse maps as JSON text in one statement over the columns already read,
rows straight from Arrow or DuckDB's row texts. Whenever something is not provably the SQL step's
answer (a term the planner leaves to the evaluator, a constant of an unexpected type, an unknown
ROI or property) :meth:`SynapseAnswerExecution.answer_synapses` returns None and the SQL step runs.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flatprint.cypher import ast, batchcache, columnar, jsonanswer, sqlgen
from flatprint.cypher.evaluator import Evaluator
from flatprint.cypher.neuronanswers import compare_array
from flatprint.cypher.planner import plan_match
from flatprint.cypher.rewriter import and_all
from flatprint.cypher.sqlgen import select_statement
from flatprint.cypher.synapseplan import Compare, End, SynapseEnd, SynapseShape
from flatprint.store.cache import BuildOnceCache, store_key
from flatprint.store.columns import SYNAPSE_COLUMNS
from flatprint.store.partners import (
    PARTNER_COLUMNS,
    connected_pairs,
    listed_bodies,
    pair_weights,
    partners_between,
    partners_of_pairs,
    synapses_by_id,
    synapses_of_bodies,
)

#: False: every such query through SQL (tests compare both ways).
USE_SYNAPSE_ANSWERS = True
#: listed bodies on both sides up to which partners is read between them directly (as the library)
FEW_SOURCES, FEW_PAIRS = 4, 64
#: answers of at most this many rows written from Python values (few_rows_json): at scale 0.1, for
#: fetch_synapse_connections' rows, 0.34 ms against 0.90 for 4 rows, 1.47 against 1.54 for 512,
#: 2.17 against 1.91 for 768 (the column-wise writer's ~0.9 ms of kernels, then ~1.2 us a row)
FEW_ROWS = 384
#: more bodies than this on an end: the SQL step (a literal list that long costs more than it saves)
MAX_BODIES = 20_000

#: an end's bodies by its conditions (store, label, variable, terms' text), for the batches that repeat them
_queried_bodies: BuildOnceCache[np.ndarray] = BuildOnceCache(max_entries=256)

#: a synapse property's column: the store's map, and a location's coordinates by their own names
_COLUMN = {**SYNAPSE_COLUMNS, "x": "x", "y": "y", "z": "z"}


class _NotHere(Exception):
    """The query needs what this step does not prove: the SQL step answers it."""


class SynapseAnswerExecution:
    """The synapse-layout answers of :class:`flatprint.cypher.engine.Execution`."""

    def answer_synapses(
        self, shape: SynapseShape, rows: list[dict], match: ast.Match, projection: ast.Return
    ) -> tuple[list[str], list[list]] | None:
        """(columns, rows) of the shape's RETURN (``columnar_arrow`` set), or None when the SQL step
        must answer. A batch of a batched call (one ``bodyId`` term; batchcache.py) is first offered
        to the batch cache: from the shape's second batch on, its kept general answer gives every
        batch without SQL (~7 ms of CPU a batch at scale 0.01), cheaper than reading each batch."""
        if not USE_SYNAPSE_ANSWERS or rows != [{}] or not self.columnar_allowed:
            return None
        names = [item.name for item in shape.items]
        if batchcache.body_condition(match.where) is not None and any(i.kind == "map" for i in shape.items):
            kept = self._answer_from_general_query(match, [i.expression for i in projection.items], names)
            if kept is not None:
                return names, kept
        try:
            return _Answer(self, shape).run()
        except _NotHere:
            return None


class _Answer:
    def __init__(self, execution, shape: SynapseShape):
        self.execution = execution
        self.shape = shape
        self.model = execution.model
        self.cursor = execution.cursor
        self.evaluate = Evaluator(execution.params)

    def constant(self, expr):
        return self.evaluate(expr, {})

    def run(self) -> tuple[list[str], list[list]]:
        shape = self.shape
        ends = {}
        tests = [self.synapse_tests(shape.pre_syn)]
        if shape.post is not None:
            tests = _known_kinds([*tests, self.synapse_tests(shape.post_syn)])
        columns, tests = self.select_items(self.synapse_columns(), tests)
        weights = [self.number(t) for t in shape.weight_tests]
        pre = self.bodies(shape.pre)
        if shape.post is None:
            got = synapses_of_bodies(self.cursor, pre, ", ".join(columns))
            self.execution.deadline.check(len(got["syn_id"]))
            keep = np.flatnonzero(self.passes(got, tests[0]))
            ends[shape.pre.variable] = got["body"][keep]
            ends[shape.pre_syn.variable] = (got, keep)
        else:
            post = self.bodies(shape.post)
            rows = self.partner_rows(pre, post)
            if weights:
                count = pair_weights(rows)
                keep = np.ones(len(count), bool)
                for test, value in zip(shape.weight_tests, weights):
                    keep &= compare_array(count, test.op, value)
                rows = {c: v[keep] for c, v in rows.items()}
            n = len(rows["pre_id"])
            if not n and self.execution.json_bytes:  # no rows: no columns to read, nor their types
                self.execution.columnar_json, self.execution.columnar_rows = b"[]", 0
                return [item.name for item in shape.items], []
            # also without rows: the answer's columns keep their types
            got, at = synapses_by_id(self.cursor, np.concatenate([rows["pre_id"], rows["post_id"]]), ", ".join(columns))
            self.execution.deadline.check(2 * n)
            pre_at, post_at = at[:n], at[n:]
            keep = self.passes(got, tests[0], pre_at) & self.passes(got, tests[1], post_at)
            ends[shape.pre.variable] = rows["body_pre"][keep]
            ends[shape.post.variable] = rows["body_post"][keep]
            # each end as the rows read and, per answer row, the position of its synapse there
            ends[shape.pre_syn.variable] = (got, pre_at[keep])
            ends[shape.post_syn.variable] = (got, post_at[keep])
        return self.answer(ends)

    # -- which bodies

    def bodies(self, end: End) -> np.ndarray:
        """The sorted body ids of ``end``: listed ids without SQL, else one query of the end alone."""
        listed = None
        for term in end.terms:
            ids = self.listed_ids(term, end.variable)
            if ids is None:
                listed = None
                break
            listed = ids if listed is None else np.intersect1d(listed, ids)
        if listed is not None:
            return listed_bodies(self.execution.store, self.cursor, listed, end.neuron)
        if not end.terms:
            raise _NotHere  # every body of the label: the SQL step's answer
        if any(isinstance(e, ast.Parameter) for term in end.terms for e in term.walk()):
            return self.queried_bodies(end)
        # batches repeat an end's conditions (n.type = 'T' with each target body): one query per
        # store and conditions (stores are read-only)
        key = (store_key(self.execution.store), end.neuron, end.variable, tuple(t.to_cypher() for t in end.terms))
        return _queried_bodies.get(key, lambda: self.queried_bodies(end))

    def queried_bodies(self, end: End) -> np.ndarray:
        """The bodies of ``end`` by one SQL query of the end alone (its terms as the SQL step renders them)."""
        node = ast.NodePattern(end.variable, ("Neuron",) if end.neuron else ("Segment",))
        plan = plan_match(
            (ast.PathPattern((node,)),),
            and_all(list(end.terms)),
            self.model,
            bound_kinds={},
            bound_values={},
            params=self.execution.params,
            needed_props=set(),
        )
        if plan.matches_nothing:
            return np.zeros(0, np.int64)
        if plan.residual or plan.path_bindings or plan.uses_bound:
            raise _NotHere  # a term only the evaluator can decide
        sql = select_statement([(plan.nodes[end.variable].id_sql, "bodyId")], plan.from_where)
        ids = np.asarray([row[0] for row in self.execution.run_sql(sql)], dtype=np.int64)
        if len(ids) > MAX_BODIES:
            raise _NotHere
        return np.unique(ids)

    def listed_ids(self, term: ast.Expression, variable: str) -> np.ndarray | None:
        """The ids of ``v.bodyId = constant`` / ``v.bodyId IN constant`` (integers only: ``1.0 = 1``
        is the SQL step's), else None."""
        if isinstance(term, ast.Comparison) and len(term.operators) == 1 and term.operators[0] == "=":
            a, b = term.operands
            value_expr = b if _is_body_id(a, variable) else a if _is_body_id(b, variable) else None
            if value_expr is None or not isinstance(value_expr, (ast.Literal, ast.Parameter)):
                return None
            values = [self.constant(value_expr)]
        elif isinstance(term, ast.In) and _is_body_id(term.element, variable):
            if not isinstance(term.collection, (ast.ListLiteral, ast.Parameter, ast.Literal)):
                return None
            if (
                isinstance(term.collection, ast.ListLiteral)
                and term.collection.literal_values() is None
                and not all(isinstance(i, (ast.Literal, ast.Parameter)) for i in term.collection.items)
            ):
                return None
            values = self.constant(term.collection)
            if not isinstance(values, list):
                return None
        else:
            return None
        values = [v for v in values if v is not None]  # null = x never holds
        if any(not isinstance(v, int) or isinstance(v, bool) or not -(2**63) <= v < 2**63 for v in values):
            return None
        return np.unique(np.asarray(values, dtype=np.int64))

    def partner_rows(self, pre: np.ndarray, post: np.ndarray) -> dict[str, np.ndarray]:
        if not (len(pre) and len(post)):
            return {c: np.empty(0, np.int64) for c in PARTNER_COLUMNS}
        if len(pre) <= FEW_SOURCES and len(pre) * len(post) <= FEW_PAIRS:
            return partners_between(self.cursor, pre, post)
        body_pre, body_post = connected_pairs(self.cursor, pre, post)
        return partners_of_pairs(self.cursor, body_pre, body_post)

    # -- synapse tests

    def synapse_columns(self) -> list[str]:
        """The synapses columns the tests and items read."""
        wanted = {"conf", "x", "y", "z"}
        shape = self.shape
        for syn in (shape.pre_syn, shape.post_syn):
            if syn is not None and syn.roi_terms:
                wanted |= {"primary_label", "major_label"}
        for item in shape.items:
            if item.kind == "map":
                wanted |= set(columnar.map_columns(self.model, item.removed))
            elif item.kind == "value":
                if item.prop in _COLUMN:
                    wanted.add(_COLUMN[item.prop])
                elif item.prop in self.model.nt_columns:
                    wanted.add(item.prop)
                else:
                    raise _NotHere  # a property of no column: null in SQL's answer
        return sorted(wanted)

    def select_items(self, columns: list[str], tests: list[list]) -> tuple[list[str], list[list]]:
        """The synapses select items (the ``columns`` read) and the tests over them. A ``type`` test
        when no item needs the type itself reads whether the type is that value (a boolean column)
        instead of the strings: no Python string per synapse to read and compare."""
        if "kind" in columns or not any(t[0] == "kind" for end in tests for t in end):
            return columns, tests
        values = sorted({t[2] for end in tests for t in end if t[0] == "kind"})
        if not all(_is_utf8(v) for v in values):
            # SQL text cannot hold it (a lone surrogate): compare the type strings read, as it matches none
            return sorted({*columns, "kind"}), tests
        items = [sqlgen.equals_item("kind", v, f"kind_is_{k}") for k, v in enumerate(values)]
        tests = [
            [(f"kind_is_{values.index(t[2])}", "true", None) if t[0] == "kind" else t for t in end] for end in tests
        ]
        return columns + items, tests

    def synapse_tests(self, syn: SynapseEnd) -> list:
        """(column, op, value) comparisons and ROI label masks (per ROI set: allowed labels)."""
        tests = []
        for compare in syn.compares:
            if compare.prop == "confidence":
                tests.append(("conf", compare.op, self.number(compare)))
            else:
                value = self.constant(compare.value)
                if not isinstance(value, str):
                    raise _NotHere
                tests.append(("kind", "=", value))
        for names in syn.roi_terms:
            if any(name not in self.model.roi_set for name in names):
                raise _NotHere
            tests.append(("rois", self.roi_masks(names), None))
        return tests

    def number(self, compare: Compare) -> float | int:
        value = self.constant(compare.value)
        if (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or (isinstance(value, float) and math.isnan(value))
        ):
            raise _NotHere  # nulls, NaN, strings: the SQL step's semantics
        return value

    def roi_masks(self, names) -> dict[str, np.ndarray]:
        """Per ROI set ('primary', 'major'): a boolean array over labels, True for labels counted
        under any of ``names`` (the flags a synapse's map holds, GraphModel.roi_names_of_label)."""
        wanted = set(names)
        size = max((label for _, label in self.model.roi_names_of_label), default=0) + 2
        masks = {"primary": np.zeros(size, bool), "major": np.zeros(size, bool)}
        for (roi_set, label), rois in self.model.roi_names_of_label.items():
            if roi_set in masks and wanted & set(rois):
                masks[roi_set][label] = True
        return masks

    def passes(self, got: dict[str, np.ndarray], tests: list, at: np.ndarray | None = None) -> np.ndarray:
        """Per row of ``got`` (or per position ``at`` in it) whether its synapse passes ``tests``."""

        def column(name):
            return got[name] if at is None else got[name][at]

        keep = np.ones(len(got["syn_id"]) if at is None else len(at), bool)
        for name, op, value in tests:
            if name == "rois":
                keep &= _label_test(op["primary"], column("primary_label")) | _label_test(
                    op["major"], column("major_label")
                )
                continue
            if op == "never":  # a type test no end of a pair passes (_known_kinds)
                keep[:] = False
                continue
            values = column(name)
            known = ~np.ma.getmaskarray(values)
            plain = np.ma.getdata(values)
            if op == "true":  # a boolean column read (select_items)
                keep &= known & plain.astype(bool)
                continue
            if name == "conf":
                plain = plain.astype(np.float64)  # Cypher compares the double
            keep &= known & compare_array(plain, op, value)
        return keep

    # -- the answer

    def answer(self, ends: dict) -> tuple[list[str], list[list]]:
        """The RETURN's columns, each synapse column taken from the rows read (``ends``: a body
        array per end, (rows read, positions) per synapse), each map written once per synapse."""
        execution = self.execution
        names = [item.name for item in self.shape.items]
        if execution.json_bytes:
            try:
                return names, self.json_answer(ends)
            except jsonanswer.NotWritten:
                pass  # the rows and the Arrow answer, as for any caller
        columns, maps = [], set()
        for index, item in enumerate(self.shape.items):
            plain = _plain_column(item, ends)
            if plain is not None:
                columns.append(plain)
                continue
            maps.add(index)
            columns.append(self.map_texts(item, *ends[item.variable]))
        rows, execution.columnar_arrow = columnar.build_aligned(columns, names, maps, execution.deadline.check)
        return names, rows

    def json_answer(self, ends: dict) -> list:
        """The answer written as the JSON endpoint's bytes (``columnar_json``; jsonanswer.py): no
        rows (``[]``), no Arrow answer. Raises jsonanswer.NotWritten for what is not written so."""
        if len(ends[self.shape.pre.variable]) <= FEW_ROWS:
            written = self.few_rows_json(ends)
            if written is not None:
                return written
        columns, maps = [], set()
        for index, item in enumerate(self.shape.items):
            plain = _plain_column(item, ends)
            if plain is not None:
                columns.append(plain if item.kind == "body" else columnar.arrow_column(plain))
                continue
            maps.add(index)
            got, at = ends[item.variable]
            wanted = columnar.map_columns(self.model, item.removed)
            if _labels_only(got, wanted, at):  # PSDs' maps: by their label pairs, from the labels alone
                labels = _columns_at(got, ["primary_label", "major_label"], at)
                columns.append(jsonanswer.flag_maps(self.model, item.removed, labels))
                continue
            if _increasing(at):  # each synapse once already (fetch_synapses): no texts to repeat
                columns.append(jsonanswer.synapse_map_json(self.model, item.removed, _columns_at(got, wanted, at)))
                continue
            once, where = columnar.unique_inverse(at)
            texts = jsonanswer.synapse_map_json(self.model, item.removed, _columns_at(got, wanted, once))
            columns.append(texts.take(pa.array(where.reshape(-1), type=pa.int64())))
        count = len(columns[0]) if columns else 0
        self.execution.deadline.check(count)
        self.execution.columnar_json = jsonanswer.data_json_parts(columns, maps, count)
        self.execution.columnar_rows = count
        return []

    def few_rows_json(self, ends: dict) -> list | None:
        """json_answer for a few rows: the cells as Python values (maps as dicts,
        jsonanswer.number_map_dicts) written by one ``orjson.dumps``, as the endpoint writes rows;
        None when a map holds other than numbers and ROI flags."""
        columns = []
        for item in self.shape.items:
            plain = _plain_column(item, ends)
            if plain is not None:
                columns.append((plain if item.kind == "body" else columnar.arrow_column(plain)).to_pylist())
                continue
            got, at = ends[item.variable]
            wanted = columnar.map_columns(self.model, item.removed)
            maps = jsonanswer.number_map_dicts(self.model, item.removed, _columns_at(got, wanted, at))
            if maps is None:
                return None
            columns.append(maps)
        written = jsonanswer.rows_json(columns)
        if written is None:
            return None
        self.execution.columnar_json, self.execution.columnar_rows = written, len(columns[0])
        return []

    def map_texts(self, item, got: dict[str, np.ndarray], at: np.ndarray) -> pa.Array:
        """The JSON text of the map of the synapse at each of ``at`` in the rows read ``got``, as
        DuckDB writes it: each synapse's once (a T-bar has a row per partner)."""
        wanted = columnar.map_columns(self.model, item.removed)
        once, where = columnar.unique_inverse(at)
        columns = {c: got[c][once] for c in wanted}
        try:  # the map texts in NumPy and Arrow, as DuckDB writes them
            texts = columnar.synapse_map_texts(self.model, item.removed, columns)
        except columnar.TextUnsure:  # a number written in a notation not reproduced: DuckDB writes them
            ids = pa.array(got["syn_id"][once], type=pa.int64())
            rows = pa.table(
                [ids] + [_arrow(columns[c], pa.string() if c == "kind" else None) for c in wanted],
                names=["id", *wanted],
            )
            found = columnar.synapse_maps_json(self.model, self.execution.run_arrow_checked, None, item.removed, rows)
            texts = found.column("j").take(pc.index_in(ids, value_set=found.column("id"))).combine_chunks()
        return texts.take(pa.array(where.reshape(-1), type=pa.int64()))


def _known_kinds(tests: list[list]) -> list[list]:
    """A pair's tests (pre end, post end) with their type tests decided without reading ``kind``:
    a partners row's pre end is a T-bar and its post end a PSD (ingest resolves ``pre_id`` among the
    ``kind = 'pre'`` rows only and ``post_id`` among the 'post' ones, and refuses a pair it cannot
    resolve). Reading the type strings cost ~0.4 ms at scale 1.0 for the strongest pair."""
    folded = []
    for end, kind in zip(tests, ("pre", "post")):
        kept = [t for t in end if t[0] != "kind"]
        if any(t[0] == "kind" and t[2] != kind for t in end):
            kept.append(("syn_id", "never", None))
        folded.append(kept)
    return folded


def _is_body_id(e, variable: str) -> bool:
    return (
        isinstance(e, ast.Property)
        and e.name == "bodyId"
        and isinstance(e.subject, ast.Variable)
        and e.subject.name == variable
    )


def _plain_column(item, ends: dict) -> pa.Array | None:
    """A body or property item's column of the answer from the rows read (``ends``, as for
    ``_Answer.answer``); None for a map item."""
    if item.kind == "body":
        return pa.array(ends[item.variable], type=pa.int64())
    if item.kind != "value":
        return None
    got, at = ends[item.variable]
    column = _COLUMN.get(item.prop, item.prop)
    return _arrow(_taken(got[column], at), pa.string() if column == "kind" else None)


def _columns_at(got: dict[str, np.ndarray], names: list[str], at: np.ndarray) -> dict[str, np.ndarray]:
    """The columns ``names`` of the rows read, at the positions ``at``."""
    return {c: _taken(got[c], at) for c in names}


def _labels_only(got: dict[str, np.ndarray], names: list[str], at: np.ndarray) -> bool:
    """Whether the map columns ``names`` of the rows read at ``at`` are NULL throughout but the ROI
    labels (a map is then its label pair's: fetch_synapse_connections' PSD maps, NT probabilities NULL)."""
    for name in names:
        if name not in ("primary_label", "major_label"):
            mask = np.ma.getmask(got[name])
            if mask is np.ma.nomask or not mask[at].all():
                return False
    return True


def _increasing(at: np.ndarray) -> bool:
    """Whether the positions ``at`` are strictly increasing (no position twice)."""
    return len(at) < 2 or bool((at[1:] > at[:-1]).all())


def _taken(values, at: np.ndarray):
    """``values[at]`` of a column read (masked where NULL): a plain array when no value is NULL
    (NumPy's masked indexing costs several times the plain one)."""
    if not isinstance(values, np.ma.MaskedArray):
        return values[at]
    mask = np.ma.getmask(values)
    if mask is np.ma.nomask:
        return values.data[at]
    return np.ma.MaskedArray(values.data[at], mask=mask[at])


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _arrow(values, kind: pa.DataType | None) -> pa.Array:
    """A NumPy column (masked where NULL) as an Arrow array with its nulls."""
    mask = np.ma.getmaskarray(values) if isinstance(values, np.ma.MaskedArray) else None
    return pa.array(np.ma.getdata(values), type=kind, mask=mask)


def _label_test(mask: np.ndarray, labels) -> np.ndarray:
    known = ~np.ma.getmaskarray(labels)
    plain = np.ma.getdata(labels).astype(np.int64)
    inside = (plain >= 0) & (plain < len(mask))
    return known & inside & mask[np.where(inside, plain, 0)]
