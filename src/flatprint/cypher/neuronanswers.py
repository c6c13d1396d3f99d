"""Answering a :class:`~flatprint.cypher.neuronplan.NeuronShape` from the neuron table and graph in RAM.

Only when they are built already (the server builds them in the background at start, see
:func:`warm`; a first query never waits for a build) and every constant has the type the lookup
expects; otherwise :meth:`NeuronAnswerExecution.answer_from_neurons` returns None and the SQL step
runs. Values are those the SQL step returns: the table's columns as DuckDB gives them, points as
:class:`Point`, roiInfo texts rebuilt from the per-ROI rows exactly as ingest writes them.
"""

from __future__ import annotations

import math
from operator import itemgetter

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from flatprint.cypher import ast
from flatprint.cypher.evaluator import Evaluator
from flatprint.cypher.jsonanswer import rows_json
from flatprint.cypher.neuronplan import NeuronShape, NodeSpec, Test
from flatprint.cypher.values import POINT_CRS, Point, to_output
from flatprint.store.columns import POINT_COLUMNS
from flatprint.store.neurongraph import has_neuron_graph, kept_neuron_graph, neuron_graph
from flatprint.store.neurontable import ROI_COUNTS, has_neuron_table, kept_neuron_table, neuron_table
from flatprint.store.sql import distinct_ids

#: False: every query through SQL (tests compare both ways).
USE_NEURON_ANSWERS = True
#: Above this many matched relationships the SQL step (column-wise results) answers instead.
MAX_PAIRS = 200_000


#: Up to this many rows, node properties are read value by value (a take costs ~20 us a column).
FEW_ROWS = 16


class _NotHere(Exception):
    """The query needs what the RAM answer does not prove: the SQL step answers it."""


def warm(store) -> None:
    """Build the store's neuron table and neuron graph (seconds at full scale; the server calls this
    in a background thread at start)."""
    if has_neuron_table(store):
        neuron_table(store)
    if has_neuron_graph(store):
        neuron_graph(store)


class NeuronAnswerExecution:
    """The in-RAM answers of :class:`flatprint.cypher.engine.Execution`."""

    def answer_from_neurons(self, shape: NeuronShape, rows: list[dict]) -> tuple[list[str], list[list]] | None:
        """(columns, rows) of the shape's RETURN, or None when the SQL step must answer."""
        if not USE_NEURON_ANSWERS or rows != [{}] or not has_neuron_table(self.store):
            return None
        table = kept_neuron_table(self.store)
        if table is None:
            return None
        graph = None
        if shape.post is not None:
            graph = kept_neuron_graph(self.store) if has_neuron_graph(self.store) else None
            if graph is None or not _same_neurons(table, graph):
                return None
        try:
            answer = _Answer(self, shape, table, graph)
            answered = answer.run()
        except _NotHere:
            return None
        self.rows_final = answer.final
        return answered


def _answerable(table, model) -> frozenset:
    kept = table.__dict__.setdefault("_answerable", {})
    key = id(model)
    if key not in kept:
        kept.clear()  # one model per store and process, normally
        kept[key] = frozenset(table.columns.column_names) & frozenset(model.segment_properties)
    return kept[key]


def _same_neurons(table, graph) -> bool:
    """Whether table and graph number the same neurons (both read ``neurons``; checked once a pair)."""
    key = id(graph)
    verdict = table.__dict__.setdefault("_same_as_graph", {})
    if key not in verdict:
        verdict[key] = len(table.body_ids) == len(graph.body_ids) and bool(
            np.array_equal(table.body_ids, graph.body_ids)
        )
    return verdict[key]


class _Answer:
    def __init__(self, execution, shape: NeuronShape, table, graph):
        self.execution = execution
        self.shape = shape
        self.table = table
        self.graph = graph
        self.evaluate = Evaluator(execution.params)
        # the top-level query's only part: its rows leave as the answer (values as output_rows writes
        # them, converted here column by column; the engine skips its pass over every value)
        self.final = execution.columnar_allowed
        # node properties the table answers: plain columns of both ``neurons`` and the graph model
        self.answerable = _answerable(table, execution.model)

    def constant(self, expr):
        if type(expr) is ast.ListLiteral:
            values = expr.literal_values()  # what the evaluator gives, without its dispatch per item
            if values is not None:
                return list(values)
        return self.evaluate(expr, {})

    def run(self) -> tuple[list[str], list[list]]:
        shape = self.shape
        pre = self.candidates(shape.pre)
        counting = all(item.prop is None for item in shape.items)
        if shape.post is None and counting:
            count = len(self.table.body_ids) if pre is None else len(pre)
            return [item.name for item in shape.items], [[count] * len(shape.items)]
        if shape.post is None:
            if pre is None:
                raise _NotHere  # every neuron: the column-wise SQL answer
            positions = {shape.pre.variable: pre}
            pairs = None
        else:
            post = self.candidates(shape.post)
            pairs = self.pairs(pre, post)
            positions = {shape.pre.variable: self.graph.pre[pairs], shape.post.variable: self.graph.post[pairs]}
        count = len(pairs) if pairs is not None else len(positions[shape.pre.variable])
        if counting:
            return [item.name for item in shape.items], [[count] * len(shape.items)]
        columns, plain = [], []  # plain: the column holds output values already (_output_column)
        for item in shape.items:
            if item.variable == shape.rel:
                values = self.rel_values(item.prop, pairs)
                plain.append(self.plain_rel_values(item.prop))
            else:
                values = self.node_values(item.prop, positions[item.variable])
                plain.append(self.plain_node_values(item.prop))
            if item.default is not None:
                default = self.constant(item.default)
                values = [default if v is None else v for v in values]
                plain[-1] = plain[-1] and type(default) in _PLAIN_TYPES
            columns.append(values)
        order = range(count)
        for index, descending in reversed(shape.order):  # stable sorts, the last key first
            column = columns[index]
            _check_sortable(column)
            order = _sorted_rows(order, column, descending)
        skip = self.count(shape.skip, 0)
        limit = self.count(shape.limit, None)
        order = order[skip:] if limit is None else order[skip : skip + limit]
        if order != range(count):
            columns = [_taken(column, order) for column in columns]
        names = [item.name for item in shape.items]
        if self.final:
            columns = [column if known else _output_column(column) for column, known in zip(columns, plain)]
            written = rows_json(columns) if self.execution.json_bytes else None
            if written is not None:  # the JSON endpoint's bytes, with no list made per row
                self.execution.columnar_json, self.execution.columnar_rows = written, len(order)
                return names, []
        rows = [list(row) for row in zip(*columns)] if columns else [[] for _ in order]
        return names, rows

    def count(self, expr, default):
        if expr is None:
            return default
        value = self.constant(expr)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _NotHere  # the SQL step reports the error
        return value

    # -- which neurons

    def candidates(self, spec: NodeSpec) -> np.ndarray | None:
        """Sorted positions of the neurons ``spec`` admits; None: all of them."""
        found = None
        listed = False
        for term in spec.terms:
            found_each = [self.test_positions(t, spec.segment_only) for t in term]
            union = found_each[0] if len(term) == 1 else distinct_ids(np.concatenate(found_each))
            found = union if found is None else np.intersect1d(found, union, assume_unique=True)
            listed = listed or (len(term) == 1 and term[0].prop == "bodyId")
        if spec.segment_only and not listed:
            raise _NotHere  # a Segment that may not be a neuron: its relationships are not in the graph
        return found

    def test_positions(self, test: Test, segment_only: bool) -> np.ndarray:
        """Sorted positions (each once) of the neurons ``test`` admits."""
        value = self.constant(test.value)
        values = value if test.op == "IN" else [value]
        if value is None:
            return np.zeros(0, dtype=np.int64)
        if not isinstance(values, list):
            raise _NotHere
        values = [v for v in values if v is not None]
        if test.prop == "bodyId":
            if not set(map(type, values)) <= _INT_TYPE:
                raise _NotHere  # 1.0 = 1 in Cypher (and booleans, other numbers): leave them to SQL
            bodies = np.asarray(values, dtype=np.int64)
            where = self.table.search(bodies)
            inside = where < len(self.table.body_ids)
            inside[inside] = self.table.body_ids[where[inside]] == bodies[inside]
            if segment_only and not inside.all():
                raise _NotHere  # a listed Segment that is no neuron
            return distinct_ids(where[inside])
        if any(not isinstance(v, str) for v in values):
            raise _NotHere
        index = self.table.indexes.get(test.prop)
        if index is None:
            raise _NotHere
        return index.lookup(values)

    def pairs(self, pre: np.ndarray | None, post: np.ndarray | None) -> np.ndarray:
        """Indices of the graph's pairs between the candidates, weight tests applied."""
        graph = self.graph
        if pre is None and post is None:
            raise _NotHere  # every relationship
        if pre is not None and (post is None or len(pre) <= len(post)):
            pairs = graph.outgoing(pre)
            if post is not None:
                pairs = pairs[np.isin(graph.post[pairs], post)]
        else:
            pairs = graph.incoming(post)
            if pre is not None:
                pairs = pairs[np.isin(graph.pre[pairs], pre)]
            pairs = np.sort(pairs)  # (pre, post) order, as the outgoing side gives
        for test in self.shape.rel_tests:
            value = self.constant(test.value)
            if value is None:
                return pairs[:0]
            if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
                raise _NotHere
            pairs = pairs[compare_array(graph.weight[pairs], test.op, value)]
        if len(pairs) > MAX_PAIRS:
            raise _NotHere
        return pairs

    # -- values

    def node_values(self, prop: str, positions: np.ndarray) -> list:
        if prop == "roiInfo":
            unique, inverse = np.unique(positions, return_inverse=True)
            texts = roi_info_texts(self.table, unique)
            return [texts[i] for i in inverse.tolist()]
        if prop not in self.answerable:
            raise _NotHere  # ROI flags, properties of no column: SQL knows
        if prop == "bodyId":
            return self.table.body_ids[positions].tolist()  # the column, as NumPy
        index = self.table.indexes.get(prop)
        if index is not None and index.row_codes is not None:  # type, instance: by value number
            return index.values_at(positions)
        column = self.table.columns.column(prop)
        if len(positions) <= FEW_ROWS and column.num_chunks == 1:  # a lookup: scalars beat a take
            chunk = column.chunk(0)
            values = [chunk[index].as_py() for index in positions.tolist()]
        else:
            values = column.take(pa.array(positions, pa.int64())).to_pylist()
        if prop in POINT_COLUMNS:
            return [Point(v) if v is not None and all(c is not None for c in v) else None for v in values]
        return values

    def plain_node_values(self, prop: str) -> bool:
        """Whether :meth:`node_values` gives plain values only (ints, strings, booleans, None: what
        ``to_pylist`` gives of those column types), which are output values as they are."""
        if prop == "roiInfo":
            return True
        if prop in POINT_COLUMNS:
            return False
        kind = self.table.columns.schema.field(prop).type
        return (
            pa.types.is_integer(kind)
            or pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or (pa.types.is_boolean(kind))
        )

    def plain_rel_values(self, prop: str) -> bool:
        """Whether :meth:`rel_values` gives plain values only (integer weights, texts)."""
        if prop == "weight":
            return self.graph.weight.dtype.kind in "iu"
        return prop in ("weightHP", "roiInfo")

    def rel_values(self, prop: str, pairs: np.ndarray) -> list:
        graph = self.graph
        if prop == "weight":
            return graph.weight[pairs].tolist()
        if prop == "weightHP":
            values = graph.weight_hp[pairs]
            if values.dtype.kind == "f":
                return [None if math.isnan(v) else int(v) for v in values.tolist()]
            return values.tolist()
        if prop == "roiInfo":
            return connection_roi_info_texts(graph, pairs)
        raise _NotHere


_PLAIN_TYPES = frozenset({str, int, bool, type(None)})
_INT_TYPE = frozenset({int})


def _sorted_rows(order, column: list, descending: bool):
    """``order`` (row numbers) stably sorted by ``column``'s values at them, nulls last (first when
    descending), as ``sorted(order, key=(is null, value), reverse=descending)``; a column of 64-bit
    integers (bodyIds) with NumPy's stable sort; ``order`` itself when already in that order (a
    look-up by bodyId's rows are in bodyId order)."""
    if set(map(type, column)) == _INT_TYPE:
        try:
            values = np.asarray(
                column if type(order) is range and order == range(len(column)) else _taken(column, order),
                dtype=np.int64,
            )
        except OverflowError:
            values = None
        if values is not None and bool(np.all(values[1:] <= values[:-1] if descending else values[1:] >= values[:-1])):
            return order  # a stable sort keeps it
        if values is not None and not (descending and len(values) and values.min() == np.iinfo(np.int64).min):
            # equal values keep their order both ways, as Python's sort with reverse=True does
            ranks = np.argsort(-values if descending else values, kind="stable")
            return np.asarray(order, dtype=np.int64)[ranks].tolist()
    return sorted(order, key=lambda row: (column[row] is None, column[row]), reverse=descending)


def _taken(column: list, order) -> list:
    """``[column[row] for row in order]`` (one C loop for two rows or more)."""
    if len(order) < 2:
        return [column[row] for row in order]
    return list(itemgetter(*order)(column))


def _output_column(values: list) -> list:
    """``values.to_output`` of a column's values (what ``values.output_rows`` makes of them): plain
    scalars as they are, non-finite floats as None, points as Neo4j's point maps."""
    kinds = set(map(type, values))
    if kinds <= _PLAIN_TYPES:
        return values
    if kinds <= _PLAIN_TYPES | {float}:
        return [None if type(v) is float and not math.isfinite(v) else v for v in values]
    if kinds <= {Point, type(None)}:
        return [None if v is None else _point_output(v) for v in values]
    return [to_output(v) for v in values]


def _point_output(point: Point) -> dict:
    """``Point.to_output``; integer coordinates (the store's points) without its per-coordinate checks."""
    if all(type(c) is int for c in point):
        return {"type": "Point", "coordinates": list(point), "crs": dict(POINT_CRS)}
    return point.to_output()


def compare_array(values: np.ndarray, op: str, value) -> np.ndarray:
    """``values <op> value`` element-wise for an op of neuronplan.COMPARISONS."""
    return {
        "=": values == value,
        "<>": values != value,
        "<": values < value,
        "<=": values <= value,
        ">": values > value,
        ">=": values >= value,
    }[op]


def _check_sortable(column: list) -> None:
    kinds = set(map(type, column)) - {type(None)}
    if len(kinds) > 1 and not kinds <= {int, float}:
        raise _NotHere  # mixed types: Cypher's order across types is the SQL step's


def roi_info_texts(table, positions: np.ndarray) -> list[str]:
    """roiInfo of the neurons at ``positions`` as the text ingest stores (keys in ROI_COUNTS order;
    what orjson writes for the same dicts; tested), assembled column-wise (:func:`_object_texts`)."""
    rows, units = table.roi_rows(positions)
    codes = table.roi_code[rows]
    counts = [table.counts(name, rows) for name in ROI_COUNTS]
    if table.roi_json_rank is not None:  # the text orders its ROIs by their escaped names
        order = np.lexsort((table.roi_json_rank[codes], units))
        units, codes, counts = units[order], codes[order], [column[order] for column in counts]
    return _object_texts(table, table.roi_names, ROI_COUNTS, codes, counts, units, len(positions))


def connection_roi_info_texts(graph, pairs: np.ndarray) -> list[str]:
    """ConnectsTo.roiInfo of ``pairs`` as the SQL step writes it: ``{roi: {"pre": n, "post": n}}``
    (a NULL count written null, as JSON has it)."""
    rows, units = graph.roi_rows(pairs)
    values = [graph.roi_pre[rows], graph.roi_weight[rows]]
    return _object_texts(graph, graph.roi_names, ("pre", "post"), graph.roi_code[rows], values, units, len(pairs))


#: Counts below this take their text from the number texts kept per owner (~20 bytes each, once per
#: field); a larger one (rare: 0.1 % of a neuron's ROI counts at scale 0.1) is cast in the call.
NUMBER_TEXTS = 1 << 14


class _Pieces:
    """Every text piece of one owner's roiInfo objects in one Arrow string array: each ROI's key
    as the object's first (``{"roi":{"pre":``) and later member (``,"roi":{"pre":``), then for each
    field a block of the numbers 0 .. NUMBER_TEXTS - 1 and ``null`` written with what follows them:
    the next field's name (``12,"post":``), or for the last field the member's end ``12}``, or a
    second block with the object's end too ``12}}``."""

    def __init__(self, names, fields: tuple[str, ...]):
        keys = [orjson.dumps(str(name)).decode() + ':{"' + fields[0] + '":' for name in names]  # as orjson escapes
        self.later_key = len(keys)
        self.suffixes = [',"' + name + '":' for name in fields[1:]] + ["}", "}}"]
        self.numbers = NUMBER_TEXTS  # then "null"
        numbers = pa.concat_arrays([pa.array(np.arange(self.numbers)).cast(pa.string()), pa.array(["null"])])
        blocks = [pc.binary_join_element_wise(numbers, suffix, "") for suffix in self.suffixes]
        self.blocks = [2 * len(keys) + k * (self.numbers + 1) for k in range(len(blocks))]
        texts = pa.array(["{" + key for key in keys] + ["," + key for key in keys], pa.string())
        self.array = pa.concat_arrays([texts, *blocks])


def _pieces(owner, names, fields: tuple[str, ...]) -> _Pieces:
    """The owner's :class:`_Pieces` for ``fields`` (kept on ``owner``)."""
    kept = owner.__dict__.setdefault("_roi_text_pieces", {})
    if fields not in kept:
        kept[fields] = _Pieces(names, fields)
    return kept[fields]


def _object_texts(owner, names, fields, codes: np.ndarray, values: list[np.ndarray], units, count: int) -> list[str]:
    """One JSON object per unit ``0 .. count - 1``: ``{"roi": {field: value, ...}, ...}`` from the
    rows (ROI ``codes`` into ``names``, one array of integer ``values`` per field, NaN: null;
    ``units`` sorted) of each unit in row order; a unit without rows is ``{}``.

    Column-wise: the index of each row's pieces (its key, with ``{`` before a unit's first; each
    value with what follows it, ``}}`` after a unit's last) into the owner's :class:`_Pieces`, one
    Arrow take of them, and the texts are slices of the take's character buffer (where a Python
    f-string per row costs ~1.5 us: 40 ms for a type's 794 neurons at 1.0)."""
    if count == 0:
        return []
    pieces = _pieces(owner, names, tuple(fields))
    rows, width = len(codes), len(fields) + 1  # pieces per row
    starts = np.searchsorted(units, np.arange(count + 1))  # each unit's first row
    filled = starts[:-1] < starts[1:]
    first = np.zeros(rows, dtype=bool)
    first[starts[:-1][filled]] = True
    last = np.zeros(rows, dtype=bool)
    last[starts[1:][filled] - 1] = True
    row_pieces = np.empty((rows, width), dtype=np.int64)
    row_pieces[:, 0] = np.where(first, 0, pieces.later_key) + codes
    extras, extra_at = [], len(pieces.array)
    for k, column in enumerate(values):
        null = np.isnan(column) if column.dtype.kind == "f" else None
        number = (column if null is None else np.where(null, 0, column)).astype(np.int64, copy=False)
        block = pieces.blocks[k] if k < len(fields) - 1 else np.where(last, pieces.blocks[k + 1], pieces.blocks[k])
        index = block + (number if null is None else np.where(null, pieces.numbers, number))
        beyond = np.flatnonzero((number < 0) | (number >= pieces.numbers))
        if len(beyond):  # their texts made here, after the kept ones
            suffix = pieces.suffixes[k] if k < len(fields) - 1 else pc.if_else(last[beyond], "}}", "}")
            extras.append(pc.binary_join_element_wise(pa.array(number[beyond]).cast(pa.string()), suffix, ""))
            index[beyond] = extra_at + np.arange(len(beyond))
            extra_at += len(beyond)
        row_pieces[:, k + 1] = index
    dictionary = pa.concat_arrays([pieces.array, *extras]) if extras else pieces.array
    taken = dictionary.take(pa.array(row_pieces.reshape(-1)))
    # the take writes the pieces' characters one after the other: unit k's text runs from the start
    # of its first row's key to the end of its last row's "}}"
    offsets = np.frombuffer(taken.buffers()[1], dtype=np.int32, count=rows * width + 1, offset=4 * taken.offset)
    bounds = offsets[starts * width]
    texts = pa.StringArray.from_buffers(count, pa.py_buffer(bounds), taken.buffers()[2]).to_pylist()
    for unit in np.flatnonzero(~filled).tolist():
        texts[unit] = "{}"
    return texts
