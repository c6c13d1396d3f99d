"""Reconstruction status queries."""

from __future__ import annotations

from collections.abc import Container

from flatprint.errors import QueryError
from flatprint.query.client import inject_client
from flatprint.query.criteria import copy_as_neuroncriteria
from flatprint.query.results import with_provenance
from flatprint.store.sql import sql_literal


@inject_client
def fetch_output_completeness(criteria, complete_statuses=["Traced"], batch_size=1000, *, client=None):
    """Per neuron: the share of its output weight that goes to 'complete' (e.g. Traced) bodies.

    Columns: bodyId, total_weight, traced_weight, untraced_weight, completeness. Unlike neuPrint,
    neurons whose outputs all go to untraced bodies are kept (completeness 0) instead of dropped.
    """
    if not isinstance(complete_statuses, Container) or isinstance(complete_statuses, str):
        raise QueryError("complete_statuses must be a list of status names")
    statuses = ", ".join(sql_literal(s) for s in complete_statuses) or "NULL"
    nc = copy_as_neuroncriteria(criteria, client)
    df = client.frame(f"""
        SELECT c.body_pre AS bodyId, sum(c.weight)::BIGINT AS total_weight,
               coalesce(sum(c.weight) FILTER (m.status IN ({statuses}) OR m.statusLabel IN ({statuses})), 0)::BIGINT
                 AS traced_weight
        FROM connections c JOIN segments m ON m.bodyId = c.body_post
        WHERE c.body_pre IN (SELECT n.bodyId FROM segments n WHERE {nc.where(client, "n")})
        GROUP BY c.body_pre ORDER BY c.body_pre""")
    df["untraced_weight"] = df["total_weight"] - df["traced_weight"]
    df["completeness"] = df["traced_weight"] / df["total_weight"]
    df = df[["bodyId", "total_weight", "traced_weight", "untraced_weight", "completeness"]]
    return with_provenance(df, client, f"fetch_output_completeness({nc!r}, {list(complete_statuses)!r})")
