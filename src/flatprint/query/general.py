"""Dataset-level queries: the Meta record and custom Cypher."""

from __future__ import annotations

import json

from flatprint.query.client import inject_client

_JSON_FIELDS = ("roiInfo", "roiHierarchy", "neuroglancerInfo", "neuroglancerMeta", "statusDefinitions")


@inject_client
def fetch_meta(*, client=None) -> dict:
    """The Meta record, with its JSON fields parsed (as neuprint-python's fetch_meta returns it)."""
    meta = dict(client.store.meta)
    for key in _JSON_FIELDS:
        if isinstance(meta.get(key), str):
            meta[key] = json.loads(meta[key])
    return meta


@inject_client
def fetch_custom(cypher, dataset="", format="pandas", *, client=None):
    """Run a Cypher query through flatprint's engine (the same one the server uses)."""
    return client.fetch_custom(cypher, dataset=dataset, format=format)
