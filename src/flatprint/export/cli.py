"""``flatprint export``: click commands (registered on the main CLI by flatprint.cli).

flatprint export neo4j STORE OUT      # neuprint-inputs CSVs for neo4j-admin import + import.sh
flatprint export parquet STORE OUT    # hive-partitioned Parquet + SCHEMA.md / _schema.json
"""

from __future__ import annotations

from pathlib import Path

import click

from flatprint.clickutil import FlatprintGroup


@click.group("export", cls=FlatprintGroup)
def export_group():
    """Export a store for other tools: neo4j-admin CSVs (neuPrint) or Parquet (Spark, DuckDB, Polars)."""


_store_arg = click.argument("store", type=click.Path(dir_okay=False, path_type=Path))
_out_arg = click.argument("out", type=click.Path(file_okay=False, path_type=Path))


@export_group.command("neo4j")
@_store_arg
@_out_arg
@click.option("--force", is_flag=True, help="replace OUT if it exists (only once the new export is complete)")
@click.option("--memory-limit", default="2GB", show_default=True, help="DuckDB memory limit while exporting")
@click.option("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
@click.option("--quiet", is_flag=True, help="print only the summary line")
def neo4j_cmd(store, out, force, memory_limit, threads, quiet):
    """Write STORE as neuprint-inputs CSVs for `neo4j-admin import` into the directory OUT (atomic)."""
    from flatprint.export.neo4j import export_neo4j

    def on_file(name, rows):
        if not quiet:
            click.echo(f"  {name}  {rows:,} rows")

    result = export_neo4j(store, out, force=force, memory_limit=memory_limit, threads=threads, on_file=on_file)
    c = result["counts"]
    total = sum(f["bytes"] for f in result["files"])
    click.echo(
        f"wrote {len(result['files'])} CSV files ({total / 1e6:.1f} MB) to {out} in {result['seconds']:.1f} s: "
        f"{c['segments']:,} segments ({c['neurons']:,} neurons), {c['connections']:,} connections, "
        f"{c['synapses']:,} synapses, {c['synapse_connections']:,} synapse pairs. "
        f"Load with {out}/import.sh (needs neo4j-admin)."
    )


@export_group.command("parquet")
@_store_arg
@_out_arg
@click.option(
    "--buckets",
    default=64,
    show_default=True,
    type=click.IntRange(1, 4096),
    help="body_bucket partitions (body % N) for synapses and partners",
)
@click.option("--force", is_flag=True, help="replace OUT if it exists (only once the new export is complete)")
@click.option("--memory-limit", default="2GB", show_default=True, help="DuckDB memory limit while exporting")
@click.option("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
@click.option(
    "--tables",
    default=None,
    metavar="T1,T2,...",
    help="export only these tables, comma-separated (default: all), e.g. segments,connections,partners,rois,roi_map",
)
def parquet_cmd(store, out, buckets, force, memory_limit, threads, tables):
    """Write STORE as Parquet into the directory OUT (synapse tables hive-partitioned by body bucket)."""
    from flatprint.export.parquet import export_parquet

    selected = [t.strip() for t in tables.split(",") if t.strip()] if tables is not None else None
    result = export_parquet(
        store, out, buckets=buckets, force=force, memory_limit=memory_limit, threads=threads, tables=selected
    )
    for _name, t in result["tables"].items():
        click.echo(
            f"  {t['path']:<24} {t['rows']:>12,} rows {t['bytes'] / 1e6:>8.1f} MB"
            + (f"  ({t['partitioned_by']})" if t["partitioned_by"] else "")
        )
    click.echo(f"wrote {len(result['tables'])} tables to {out} in {result['seconds']:.1f} s; schema in {out}/SCHEMA.md")
