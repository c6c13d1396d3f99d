"""Spark over a flatprint Parquet export: a small local-mode SparkSession and temp views named like the
store's tables (``segments``, ``connections``, ``partners``, ...).

pyspark is optional (``pip install pyspark``, Java 17+). On a cluster pass your own session to
:func:`register_parquet` / :func:`run_spark`; :func:`get_spark` is for a laptop
or CI: ``local[N]``, a 1 GB driver, no UI, bound to 127.0.0.1, few shuffle partitions.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pandas as pd

from flatprint.errors import FlatprintError
from flatprint.export.parquet import PARTITIONED_TABLES, SINGLE_TABLES, exported_tables
from flatprint.query.heavy import TABLES as HEAVY_TABLES, query_sql, to_spark_sql

_registered: dict[str, dict[str, str]] = {}  # applicationId -> {view: export version}


def _quiet() -> None:
    # pyspark 4 warns once per import/conversion that it does not yet support pandas 3; results here
    # are collected as Python rows, so the warning does not apply.
    warnings.filterwarnings("ignore", message=".*PySpark does not yet fully support pandas.*")


def get_spark(
    app_name: str = "flatprint",
    cores: int = 2,
    driver_memory: str = "1g",
    shuffle_partitions: int = 4,
    extra_conf: dict | None = None,
):
    """Create (or return the running) local-mode SparkSession with small memory settings."""
    _quiet()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    try:
        from pyspark.sql import SparkSession  # noqa: PLC0415 - optional dependency (the spark extra)
    except ImportError as exc:
        raise FlatprintError("pyspark is not installed (pip install pyspark; it needs Java 17+)") from exc
    builder = (
        SparkSession.builder.master(f"local[{int(cores)}]")
        .appName(app_name)
        .config("spark.driver.memory", driver_memory)
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(int(shuffle_partitions)))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.ansi.enabled", "false")
    )
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def register_parquet(spark, parquet_dir: str | os.PathLike, tables=None) -> dict[str, str]:
    """Register each table of a Parquet export as a temp view of the same name; returns {view: path}.

    Partitioned tables (``synapses/``, ``partners/``) are read as hive-partitioned directories, so
    their ``body_bucket`` column exists and filters on it prune directories.
    """

    root = Path(parquet_dir).resolve()
    wanted = tuple(tables) if tables else (*SINGLE_TABLES, *PARTITIONED_TABLES)
    views = {}
    # Re-register when the session, the directory or the export in it (its _schema.json) changed.
    stamp = root / "_schema.json"
    version = f"{root}@{stamp.stat().st_mtime_ns if stamp.exists() else 0}"
    done = _registered.setdefault(spark.sparkContext.applicationId, {})
    for table in wanted:
        path = root / table if (root / table).is_dir() else root / f"{table}.parquet"
        if not path.exists():
            raise FlatprintError(f"{root}: no table {table!r} (not a flatprint Parquet export?)")
        if done.get(table) != version:
            spark.read.parquet(str(path)).createOrReplaceTempView(table)
            done[table] = version
        views[table] = str(path)
    return views


def collect_pandas(df) -> pd.DataFrame:
    """A Spark DataFrame as pandas, via ``collect()`` (fine for query results, not for whole tables)."""
    _quiet()
    columns = list(df.columns)
    rows = df.collect()
    out = pd.DataFrame([tuple(r) for r in rows], columns=columns)
    if not rows:  # keep numeric dtypes for empty results
        from pyspark.sql import types as T  # noqa: PLC0415 - optional dependency (the spark extra)

        for field in df.schema.fields:
            if isinstance(field.dataType, (T.LongType, T.IntegerType, T.ShortType)):
                out[field.name] = out[field.name].astype("int64")
            elif isinstance(field.dataType, (T.FloatType, T.DoubleType)):
                out[field.name] = out[field.name].astype("float64")
    return out


def run_spark(parquet_dir: str | os.PathLike, name: str, spark=None, **args) -> pd.DataFrame:
    """Run flatprint.query.heavy's query ``name`` on Spark (local mode unless ``spark`` is given) over
    a Parquet export.

    The DuckDB SQL is transpiled with sqlglot; the result is collected as rows and turned into a
    pandas DataFrame (no Arrow / toPandas path, which pyspark 4 flags under pandas 3).
    """
    spark = spark or get_spark()
    # A partial export (export_parquet(tables=...)) registers what it holds. The views of the tables it
    # lacks are dropped, so that a query reading one fails naming it instead of reading another export's.
    present = exported_tables(parquet_dir, HEAVY_TABLES) or HEAVY_TABLES
    done = _registered.setdefault(spark.sparkContext.applicationId, {})
    for table in HEAVY_TABLES:
        if table not in present:
            spark.catalog.dropTempView(table)
            done.pop(table, None)
    register_parquet(spark, parquet_dir, present)
    return collect_pandas(spark.sql(to_spark_sql(query_sql(name, **args))))
