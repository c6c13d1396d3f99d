"""Executing CALL: the registry's procedures (flatprint.cypher.registry.PROCEDURES)."""

from __future__ import annotations

from flatprint.cypher import ast
from flatprint.cypher.analyzer import analyze
from flatprint.cypher.deadline import CypherTimeoutError, Deadline
from flatprint.cypher.errors import unsupported
from flatprint.cypher.evaluator import Evaluator, truthy
from flatprint.cypher.parser import parse
from flatprint.cypher.registry import PROCEDURES, QUERY_PROCEDURES
from flatprint.errors import QueryError


class ProcedureExecution:
    """The CALL part of :class:`flatprint.cypher.engine.Execution`."""

    def call(self, clause: ast.Call, rows):
        name = clause.procedure.lower()
        yields = clause.yield_items or tuple(ast.YieldItem(n) for n in PROCEDURES[name].yields)
        out = []
        evaluate = Evaluator(self.params)
        for row in rows:
            for record in self._procedure(clause, name, row, evaluate):
                new = dict(row)
                for item in yields:
                    new[item.variable] = record.get(item.name)
                if clause.where is not None and not truthy(evaluate(clause.where, new)):
                    continue
                out.append(new)
        return out, [item.variable for item in yields]

    def _procedure(self, clause, name, row, evaluate):
        if name in QUERY_PROCEDURES:
            return self._run_inner_query(clause, name, row, evaluate)
        catalogue = CATALOGUE.get(name)
        if catalogue is None:  # the analyzer refused it already; a registry entry without code lands here
            raise unsupported(clause, f"procedure {clause.procedure}")
        return catalogue(self.model)

    def _run_inner_query(self, clause, name, row, evaluate):
        """apoc.cypher.run / runTimeboxed: the inner query on the same cursor, under its own deadline."""
        text = evaluate(clause.arguments[0], row)
        if not isinstance(text, str):
            raise QueryError(f"{clause.procedure} expects the query as a string")
        inner = clause.inner_query
        if inner is None:
            inner = parse(text)
            analyze(inner)
        params = evaluate(clause.arguments[1], row) if len(clause.arguments) > 1 else {}
        if params is not None and not isinstance(params, dict):
            raise QueryError(f"{clause.procedure} expects the parameters as a map")
        box = None
        if name == "apoc.cypher.runtimeboxed":
            millis = evaluate(clause.arguments[2], row) if len(clause.arguments) > 2 else None
            box = None if millis is None else float(millis) / 1000.0
        deadline = Deadline(box, parent=self.deadline)
        inner_execution = type(self)(self.store, self.cursor, deadline, params or {}, inner)  # reads them when needed
        try:
            columns, results = inner_execution.run_query(inner)
        except CypherTimeoutError:
            if self.deadline.expired():
                raise self.deadline.error() from None
            return []  # Neo4j's runTimeboxed yields nothing when its time box runs out
        return [{"value": dict(zip(columns, r))} for r in results]


def _property_keys(model) -> list[dict]:
    keys = sorted(
        set(model.segment_properties)
        | set(model.rois)
        | set(model.nt_columns)
        | {"type", "confidence", "location", "weight", "weightHP"}
        | set(model.meta)
    )
    return [{"propertyKey": k} for k in keys]


#: the registry's procedures that describe the database (lower-case name -> records for a graph model)
CATALOGUE = {
    "db.labels": lambda model: [{"label": label} for label in ("Meta", "Neuron", "Segment", "Synapse", "SynapseSet")],
    "db.relationshiptypes": lambda model: [{"relationshipType": t} for t in ("ConnectsTo", "Contains", "SynapsesTo")],
    "db.propertykeys": _property_keys,
    "dbms.components": lambda model: [{"name": "Neo4j Kernel", "versions": ["4.4.0"], "edition": "community"}],
}
