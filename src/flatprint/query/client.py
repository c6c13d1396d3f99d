"""The library's Client: a store opened read-only, plus neuprint-python's idea of a default client.

``Client(source)`` takes a store path, or a dataset key (``"male-cns:v0.9"``) of a store found under
$FLATPRINT_HOME. Every query function accepts ``client=`` and otherwise uses the default client,
which is the most recently created one (as in neuprint-python), so ``fetch_neurons("DNge104")`` works
after one ``Client(...)``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import threading
from pathlib import Path

import pandas as pd

from flatprint.cypher.engine import execute
from flatprint.errors import QueryError, StoreError
from flatprint.query.diff import diff_stores
from flatprint.query.results import arrow_convertible, frame_from_arrow
from flatprint.store import Store, flatprint_home
from flatprint.store.sql import temporary_tables

_default_client: Client | None = None


def default_client() -> Client:
    if _default_client is None:
        raise QueryError("no default client: create one first, e.g. Client('path/to/store.duckdb')")
    return _default_client


def set_default_client(client: Client | None) -> None:
    global _default_client
    _default_client = client


def clear_default_client() -> None:
    set_default_client(None)


def inject_client(f):
    """Fill ``client=`` with the default client when the caller gave none."""

    @functools.wraps(f)
    def wrapper(*args, client=None, **kwargs):
        return f(*args, client=client or default_client(), **kwargs)

    wrapper.__signature__ = inspect.signature(f)
    return wrapper


def _find_store(key: str) -> Path:
    home = flatprint_home()
    candidates = sorted(home.glob("**/*.duckdb")) if home.exists() else []
    for path in candidates:
        try:
            store = Store.open(path)
        except StoreError:
            continue
        try:
            if store.dataset == key:
                return path
        finally:
            store.close()
    raise StoreError(f"no store for dataset {key!r} under {home} (run 'flatprint demo' or pass a store path)")


class Client:
    """A local, read-only connection to one store, with neuprint-python's Client surface."""

    def __init__(
        self, source, dataset: str | None = None, token: str | None = None, verify=None, progress: bool = False
    ):
        source = str(source)
        if source.startswith(("http://", "https://")) or "neuprint" in source and "/" not in source:
            raise QueryError(
                f"Client({source!r}): flatprint.Client opens a local store. To talk to a neuPrint server "
                "(or to 'flatprint serve'), use neuprint-python: neuprint.Client(server, dataset=..., token=...)"
            )
        path = Path(source).expanduser()
        if not path.exists() and ":" in source:
            path = _find_store(source)
        self.store = Store.open(path)
        if dataset is not None and dataset != self.store.dataset:
            raise QueryError(f"dataset {dataset!r} is not in {path} (it holds {self.store.dataset!r})")
        self.server = f"file://{path.resolve()}"
        self.dataset = self.store.dataset
        self.token = token
        self.verify = verify
        self.progress = progress
        self._local = threading.local()
        set_default_client(self)

    @classmethod
    def from_store(cls, store: Store) -> Client:
        """A client over an already open store (the server's), not made the default client."""
        client = cls.__new__(cls)
        client.store = store
        client.server = f"file://{Path(store.path).resolve()}"
        client.dataset = store.dataset
        client.token = client.verify = None
        client.progress = False
        client._local = threading.local()
        return client

    # ------------------------------------------------------------------ plumbing
    def cursor(self):
        """A DuckDB cursor for the calling thread (connections are not shared across threads)."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._local.cursor = self.store.cursor()
        return cur

    def sql(self, sql: str, params=None) -> tuple[list[str], list[tuple]]:
        cur = self.cursor()
        result = cur.execute(sql, params or [])
        columns = [d[0] for d in result.description]
        return columns, result.fetchall()

    @contextlib.contextmanager
    def temporary_tables(self, **tables):
        """Arrow tables (or DataFrames) registered on this thread's cursor for the ``with`` block under
        unique names, yielded as ``{keyword: name}``; unregistered when the block ends, also on error::

            with client.temporary_tables(e=edges) as t:
                df = client.frame(f"SELECT * FROM {t['e']}")
        """
        with temporary_tables(self.cursor(), **tables) as names:
            yield names

    def frame(self, sql: str, params=None) -> pd.DataFrame:
        """Run SQL and build the DataFrame the way neuprint-python builds it from JSON rows (from
        Arrow columns when every column has a plain type: see frame_from_arrow)."""
        cursor = self.cursor()
        relation = cursor.sql(sql, params=params) if params else cursor.sql(sql)
        if all(arrow_convertible(t) for t in relation.types):
            df = frame_from_arrow(relation.to_arrow_table())
            if df.columns.tolist() != relation.columns:
                df.columns = relation.columns  # the Arrow table may rename duplicate names
            return df
        return pd.DataFrame([list(r) for r in relation.fetchall()], columns=relation.columns)

    def __repr__(self):
        return f"Client({str(self.store.path)!r}, dataset={self.dataset!r})"

    # ------------------------------------------------------------------ metadata
    @functools.cached_property
    def meta(self) -> dict:
        from flatprint.query.general import fetch_meta  # noqa: PLC0415 - query.general imports this module

        return fetch_meta(client=self)

    @functools.cached_property
    def primary_rois(self) -> list[str]:
        return sorted(self.store.meta["primaryRois"])

    @functools.cached_property
    def all_rois(self) -> list[str]:
        return sorted(json.loads(self.store.meta["roiInfo"]))

    @functools.cached_property
    def neuron_keys(self) -> list[str]:
        return list(json.loads(self.store.meta["neuronProperties"]))

    def fetch_neuron_keys(self) -> list[str]:
        """All :Neuron properties (ROI names included, as neuPrint's keys(n) would list them)."""
        return [*self.neuron_keys, *self.all_rois]

    def provenance(self, query: str) -> dict:
        return {
            "dataset": self.store.meta.get("dataset"),
            "version": self.store.meta.get("tag"),
            "store": str(self.store.path),
            "store_checksum": self.store.info.get("sourceChecksum"),
            "store_uuid": self.store.meta.get("uuid"),
            "description": self.store.meta.get("description"),
            "query": query,
        }

    # ------------------------------------------------------------------ neuPrint surface
    def fetch_custom(self, cypher: str, dataset: str = "", format: str = "pandas", use_arrow: bool = False):
        """Run Cypher through the same engine as the server."""

        result = execute(self.store, cypher)
        if format == "json":
            return {"columns": result.columns, "data": result.data}
        return pd.DataFrame(result.data, columns=result.columns)

    def fetch_indirect(self, sources=None, targets=None, hops=2, groupby="type", normalize="input", **kwargs):
        """Effective connectivity over 1..hops connections (see flatprint.query.indirect.fetch_indirect)."""
        from flatprint.query.indirect import fetch_indirect  # noqa: PLC0415 - query.indirect imports this module

        return fetch_indirect(sources, targets, hops, groupby, normalize, client=self, **kwargs)

    def diff(self, other, **kwargs):
        """What changed from this store to ``other`` (a Client, Store or path): see flatprint.query.diff."""

        return diff_stores(self.store, getattr(other, "store", other), **kwargs)

    def fetch_version(self):
        from flatprint import __version__  # noqa: PLC0415 - the package imports this module

        return __version__

    def fetch_datasets(self, reload_cache: bool = False):
        return {self.dataset: {"description": self.store.meta.get("description")}}

    def close(self):
        self.store.close()
        if _default_client is self:
            clear_default_client()
