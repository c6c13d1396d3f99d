"""Running Cypher against a store: ``execute(store, text) -> CypherResult``; the thin executor.

Stages (one module each, as in sqlglot)::

    text --tokens/parser--> ast.Query --analyzer--> (every refusal, with line/column, against registry)
         (plancache: both once per query shape; a text of a known shape gets the tree with its literals)
         --rewriter--> (constant WITHs inlined, pass-through WITHs folded, MATCHes merged)
         --plan--> a tree of steps (plan_tree(text) shows it), walked here over rows (dicts):
           SynapseMatchProject --synapseanswers--> fetch_synapse_connections / fetch_synapses' shapes
                            from partners and synapses by body and id (else its SqlMatchProject)
           SqlMatchProject  --pushdown: planner + sqlgen--> one SQL query with GROUP BY / ORDER BY / LIMIT
                            (else its SqlMatch, then its Projection)
           SqlMatch         --matching: planner + sqlgen--> SQL --DuckDB--> rows
           PathSearch       --paths--> BFS, one SQL query per level
           Projection / Unwind --projection + evaluator--> projection, aggregation, ordering
           ProcedureCall    --procedures--> the registry's procedures
         --values.to_output--> CypherResult(columns, data) as neuPrintHTTP returns it

Only the SQL generator (sqlgen/) writes SQL text; this module runs it under the deadline.

A timeout (default 60 s) interrupts DuckDB (``connection.interrupt()`` from the watchdog in
deadline.py) and the Python loops, and raises :class:`CypherTimeoutError` ("... timeout ..."). The
server answers it as a 400 ``{"error": ...}`` (as neuPrintHTTP does), which neuprint-python 0.6.4
raises as a plain ``requests.HTTPError``, not ``NeuprintTimeoutError`` (docs/server.md, "Errors and
timeouts"). ``apoc.cypher.runTimeboxed`` runs its inner query with its own time box and yields no
rows when that runs out, as Neo4j does.

Cancellation: ``execute(..., cancel=event)`` stops the query soon (within ~50 ms plus whatever DuckDB
needs to notice an interrupt) after another thread sets the ``threading.Event`` — the server sets it
when the HTTP client disconnects — and raises :class:`CypherCancelledError`.
"""

from __future__ import annotations

import json
import threading

import duckdb
import orjson
import pyarrow as pa

from flatprint.cypher import ast
from flatprint.cypher.analyzer import analyze
from flatprint.cypher.deadline import WATCHDOG, CypherCancelledError, CypherTimeoutError, Deadline
from flatprint.cypher.evaluator import Evaluator, truthy
from flatprint.cypher.matching import MatchExecution
from flatprint.cypher.memory import MemoryBudgetError, release_free_memory
from flatprint.cypher.metaanswers import META_ANSWERS, reads_only_meta
from flatprint.cypher.neuronanswers import NeuronAnswerExecution
from flatprint.cypher.plan import (
    NeuronMatchProject,
    PartPlan,
    PathSearch,
    ProcedureCall,
    Projection,
    SqlMatch,
    SqlMatchProject,
    SynapseMatchProject,
    Unwind,
    explain,
    needed_properties,
    plan_query,
)
from flatprint.cypher.plancache import PlanCache, prepare
from flatprint.cypher.procedures import ProcedureExecution
from flatprint.cypher.projection import ProjectionExecution, distinct
from flatprint.cypher.pushdown import PushdownExecution
from flatprint.cypher.rewriter import fold_pass_through_withs, inline_constant_withs
from flatprint.cypher.schema import GraphView, model_of
from flatprint.cypher.synapseanswers import SynapseAnswerExecution
from flatprint.cypher.values import hashable, output_rows
from flatprint.errors import QueryError

__all__ = [
    "execute",
    "CypherResult",
    "CypherTimeoutError",
    "CypherCancelledError",
    "MemoryBudgetError",
    "check_query",
    "plan_tree",
    "inline_constant_withs",
    "fold_pass_through_withs",
    "needed_properties",
]

DEFAULT_TIMEOUT = 60.0
FETCH_ROWS = 65536  # rows per fetch from DuckDB: the deadline and the memory budget are checked between


class CypherResult:
    """Columns and rows exactly as neuPrintHTTP's /api/custom/custom returns them.

    ``data_json``: the rows already written as the JSON endpoint's ``data`` bytes (an answer built
    column-wise under ``execute(..., json_bytes=True)``; jsonanswer.py), spliced into the answer by
    the server; ``data`` is then parsed from them when first read. They may be given in parts
    (jsonanswer.data_json_parts), which the server joins into its answer as they are
    (``data_json_parts``): ``data_json`` joins them when first read."""

    def __init__(
        self,
        columns: list[str],
        data: list[list] | None = None,
        arrow: pa.Table | None = None,
        data_json: bytes | tuple | None = None,
        row_count: int | None = None,
    ):
        self.columns = columns
        self._data = data if data is not None or data_json is not None else []
        self.arrow = arrow  # the Arrow answer when the engine built it column-wise
        self.data_json_parts = (data_json,) if isinstance(data_json, bytes) else data_json
        self._row_count = row_count

    @property
    def data_json(self) -> bytes | None:
        parts = self.data_json_parts
        if parts is not None and len(parts) != 1:
            self.data_json_parts = parts = (b"".join(parts),)
        return None if parts is None else parts[0]

    @property
    def data(self) -> list[list]:
        if self._data is None:
            self._data = orjson.loads(self.data_json)
        return self._data

    @data.setter
    def data(self, rows: list[list]) -> None:
        self._data, self.data_json_parts, self._row_count = rows, None, None

    @property
    def row_count(self) -> int:
        """The number of rows (without parsing ``data_json``)."""
        if self._data is None and self._row_count is not None:
            return self._row_count
        return len(self.data)

    def __repr__(self) -> str:
        return f"CypherResult(columns={self.columns!r}, rows={self.row_count})"

    def to_dict(self) -> dict:
        return {"columns": self.columns, "data": self.data}

    def to_arrow(self) -> pa.Table:
        """An Arrow table; a column of nested values (maps, lists of mixed types) holds JSON text."""
        if self.arrow is not None:
            return self.arrow
        arrays = []
        for index, _ in enumerate(self.columns):
            values = [row[index] for row in self.data]
            try:
                array = pa.array(values)
                if pa.types.is_struct(array.type):  # maps (nodes, points) travel as JSON text
                    raise pa.ArrowInvalid("maps as JSON")
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                array = pa.array([None if v is None else json.dumps(v) for v in values], type=pa.string())
            arrays.append(array)
        names = list(self.columns)
        if len(set(names)) != len(names):  # Arrow allows duplicates, but keep them distinguishable
            names = [n if names.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(names)]
        return pa.table(arrays, names=names) if arrays else pa.table({})


def execute(
    store,
    text: str,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    params: dict | None = None,
    cancel: threading.Event | None = None,
    plan_cache: PlanCache | bool | None = None,
    json_bytes: bool = False,
) -> CypherResult:
    """Parse, check and run one read-only Cypher query against an open store.

    ``cancel``: when another thread sets this event the query stops and raises CypherCancelledError.
    ``plan_cache``: None uses the shared cache of parsed queries by shape (plancache.py) unless
    ``FLATPRINT_PLAN_CACHE=0``; False parses afresh; a PlanCache uses that one.
    ``json_bytes``: an answer built column-wise carries its rows as the JSON endpoint's bytes
    (``CypherResult.data_json``; no Arrow answer), as the server wants them.
    """
    if cancel is not None and cancel.is_set():
        raise CypherCancelledError("query cancelled before it started")
    about_meta = not params and "Meta" in text  # a cheap look before the answers kept for :Meta
    if about_meta:
        kept = META_ANSWERS.get(store, text)
        if kept is not None:
            return CypherResult(*kept)
    query = prepare(text, plan_cache)
    deadline = Deadline(timeout, cancel=cancel)
    execution = Execution(store, store.cursor(), deadline, params or {}, query)
    execution.columnar_allowed = len(query.parts) == 1
    execution.json_bytes = json_bytes
    stopped = None
    try:
        columns, rows = execution.run_query(query)
        if execution.columnar_json is not None:
            if deadline.usage is not None:
                deadline.usage.ensure_room_for_answer()
            return CypherResult(columns, data_json=execution.columnar_json, row_count=execution.columnar_rows)
        if execution.columnar_arrow is not None or execution.rows_final:  # rows are output values already
            data = rows
        else:
            if not execution.entities_complete:
                execution.complete_entities(rows)
            data = output_rows(rows, deadline)
        if deadline.usage is not None:
            deadline.usage.ensure_room_for_answer()
        if about_meta and execution.columnar_arrow is None and reads_only_meta(query):
            META_ANSWERS.keep(store, text, columns, data)
        return CypherResult(columns, data, arrow=execution.columnar_arrow)
    except MemoryBudgetError as exc:
        stopped = exc.with_traceback(None)  # the traceback's frames hold the stopped query's rows
    except duckdb.InterruptException:
        raise deadline.error() from None
    except (TypeError, ValueError, ArithmeticError, IndexError, KeyError, AttributeError, RecursionError) as exc:
        # a value of the wrong type reached an operator ('a' - 1, keys(5), ...): the query's fault
        raise QueryError(f"cannot evaluate the query: {type(exc).__name__}: {exc}") from None
    finally:
        try:
            execution.cursor.close()
        except duckdb.Error:
            pass
    # Stopped for the budget: with its rows freed, hand the heap back to the system; glibc keeps it
    # otherwise, and the next queries would meet the budget sooner.
    del execution, query
    release_free_memory()
    raise stopped


# ---------------------------------------------------------------------------------------------
# static checks: refuse before running (the analyzer)

check_query = analyze


def plan_tree(text: str) -> str:
    """The plan the executor walks for ``text`` (parsed and analyzed afresh), as indented lines::

    SqlMatchProject
      SqlMatch: MATCH (n:Neuron) WHERE n.bodyId = 1
      Projection: RETURN n.type
    """
    return explain(plan_query(prepare(text, False)))


# ---------------------------------------------------------------------------------------------
# execution


class Execution(
    MatchExecution,
    PushdownExecution,
    ProjectionExecution,
    ProcedureExecution,
    NeuronAnswerExecution,
    SynapseAnswerExecution,
):
    """Runs one query (and its runTimeboxed inner queries) on one cursor."""

    def __init__(self, store, cursor, deadline: Deadline, params: dict, query: ast.Node | set[str]):
        """``query``: the query (the properties it reads are found when a MATCH first needs them;
        a lookup answered by one fused statement never does), or those property names."""
        self.store = store
        self.model = model_of(store)
        self.cursor = cursor
        self.deadline = deadline
        self.params = params
        self._needed_props = query if isinstance(query, (set, frozenset)) else None
        self._query = query
        self.entities_complete = False  # run_query's rows need no complete_entities pass
        self.columnar_allowed = False  # the top-level query of one part may be answered column-wise
        self.columnar_arrow: pa.Table | None = None  # set when it was (its rows are then final)
        self.json_bytes = False  # a column-wise answer may be written as JSON bytes instead
        self.columnar_json: bytes | tuple | None = None  # set when it was (maybe in parts), with its number of rows
        self.columnar_rows = 0
        self.rows_final = False  # run_query's rows are output values already (a neuron answer)
        self.view = GraphView(self.model, cursor, self.run_sql, self.run_arrow, check_rows=deadline.check)

    @property
    def needed_props(self) -> set[str]:
        """Every property name the query reads (a MATCH's SQL fetches these with it)."""
        if self._needed_props is None:
            self._needed_props = needed_properties(self._query)
        return self._needed_props

    # -- SQL with the deadline

    def run_sql(self, sql: str, tables: dict | None = None) -> list[tuple]:
        return self._run(sql, tables, lambda cursor: self._fetch_rows(cursor.execute(sql)))

    def _fetch_rows(self, result) -> list[tuple]:
        """All rows of a streaming result, fetched in parts with the deadline and budget checked
        between them (fetchall would build every row in Python before any check)."""
        rows = result.fetchmany(FETCH_ROWS)
        if len(rows) < FETCH_ROWS:
            return rows
        while True:
            self.deadline.check(FETCH_ROWS)
            part = result.fetchmany(FETCH_ROWS)
            if not part:
                return rows
            rows.extend(part)

    def run_arrow(self, sql: str, tables: dict | None = None) -> pa.Table:
        return self._run(sql, tables, lambda cursor: cursor.sql(sql).to_arrow_table())

    def run_arrow_checked(self, sql: str, tables: dict | None = None) -> pa.Table:
        """run_arrow for results of any size: record batches, with the deadline and the memory budget
        checked between them (an Arrow table grows outside DuckDB's memory limit)."""

        def fetch(cursor):
            reader = cursor.sql(sql).to_arrow_reader(FETCH_ROWS)
            batches = []
            for batch in reader:
                batches.append(batch)
                self.deadline.check(batch.num_rows)
            return pa.Table.from_batches(batches, reader.schema)

        return self._run(sql, tables, fetch)

    def _run(self, sql: str, tables: dict | None, fetch):
        self.deadline.check()
        watch = WATCHDOG.watch(self.cursor, self.deadline)
        try:
            for name, table in (tables or {}).items():
                self.cursor.register(name, table)
            return fetch(self.cursor)
        except duckdb.InterruptException:
            raise self.deadline.error() from None
        except duckdb.OutOfMemoryException as exc:
            budget = self.deadline.budget
            if budget is None:
                raise QueryError(f"query failed in the store: {exc}") from None
            raise budget.error(f"the store ran out of its share ({exc})") from None
        except duckdb.Error as exc:
            if self.deadline.expired():
                raise self.deadline.error() from None
            raise QueryError(f"query failed in the store: {exc}") from None
        except (pa.ArrowException, OSError) as exc:
            # a streaming Arrow reader reports DuckDB's interrupt (the watchdog's timeout or a cancel) as
            # pyarrow's OSError "INTERRUPT Error: Interrupted!", not as duckdb.InterruptException
            if self.deadline.expired() or "INTERRUPT" in str(exc):
                raise self.deadline.error() from None
            raise QueryError(f"query failed in the store: {exc}") from None
        finally:
            if watch is not None:
                WATCHDOG.release(watch)
            for name in tables or {}:
                try:
                    self.cursor.unregister(name)
                except duckdb.Error:
                    pass

    # -- queries

    def run_query(self, query: ast.Query) -> tuple[list[str], list[list]]:
        plan = plan_query(query)
        columns: list[str] | None = None
        out: list[list] = []
        complete = True
        for part in plan.parts:
            self.entities_complete = False
            part_columns, rows = self.run_part(part)
            complete = complete and self.entities_complete
            columns = columns or part_columns
            out.extend(rows)
        if len(plan.parts) > 1 and not plan.union_all:
            out = distinct(out, lambda row: hashable(list(row)))
        self.entities_complete = complete
        return columns or [], out

    def run_part(self, part: PartPlan) -> tuple[list[str], list[list]]:
        """Walks the steps of one part over rows (dicts variable -> value); (columns, rows) of its end."""
        rows: list[dict] = [{}]
        for step in part.steps:
            self.deadline.check()
            if isinstance(step, NeuronMatchProject):
                answered = self.answer_from_neurons(step.shape, rows)
                if answered is not None:
                    self.entities_complete = True  # plain values only
                    return answered
                step = step.sql
            if isinstance(step, SynapseMatchProject):
                answered = self.answer_synapses(step.shape, rows, step.sql.match.clause, step.sql.projection.clause)
                if answered is not None:
                    self.entities_complete = True  # plain values and maps only
                    return answered
                step = step.sql
            if isinstance(step, SqlMatchProject):
                projection = step.projection.clause
                pushed = self.match_and_aggregate(step.match.clause, projection, rows)
                if pushed is not None:
                    names, rows = pushed
                    if isinstance(projection, ast.Return):
                        # every node in these rows already holds its whole property map
                        self.entities_complete = True
                        if self.columnar_arrow is not None:
                            return names, rows
                        return names, [[r[n] for n in names] for r in rows]
                    rows = self._with_where(projection, rows)
                    continue
                # an item does not render in SQL: the match alone, then the projection
                rows = self.match(step.match.clause, rows, row_cap=step.match.row_cap)
                self.deadline.check()
                step = step.projection
            if isinstance(step, SqlMatch):
                rows = self.match(step.clause, rows, row_cap=step.row_cap)
            elif isinstance(step, PathSearch):
                rows = self.match(step.clause, rows)
            elif isinstance(step, Unwind):
                rows = self.unwind(step.clause, rows)
            elif isinstance(step, Projection) and isinstance(step.clause, ast.With):
                names, rows = self.project(step.clause, rows)
                rows = self._with_where(step.clause, rows)
            elif isinstance(step, Projection):
                names, projected = self.project(step.clause, rows)
                return names, [[r[n] for n in names] for r in projected]
            elif isinstance(step, ProcedureCall):
                rows, names = self.call(step.clause, rows)
                if step.last:
                    return names, [[r[n] for n in names] for r in rows]
        return [], []

    def _with_where(self, clause: ast.With, rows):
        if clause.where is None:
            return rows
        evaluate = Evaluator(self.params)
        return [r for r in rows if truthy(evaluate(clause.where, r))]


# ---------------------------------------------------------------------------------------------
# helpers
