"""The ``flatprint`` command: a thin layer over the library (each command calls one function)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flatprint import __version__
from flatprint.clickutil import FlatprintGroup
from flatprint.download import DownloadOptions, download_release, missing_tables
from flatprint.errors import ReleaseError
from flatprint.release.manifest import DEFAULT_RELEASE
from flatprint.release.registry import releases

console = Console(stderr=False)


@click.group(cls=FlatprintGroup)
@click.version_option(__version__, prog_name="flatprint")
def main():
    """flatprint: a local, offline, neuPrint-compatible connectome platform."""


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--scale", default=0.01, show_default=True, type=float, help="1.0 ~ the real release's row counts")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--force", is_flag=True, help="replace OUT_DIR if it is not empty")
@click.option("--no-morphology", is_flag=True, help="tables only: no skeletons, ROI volumes or meshes")
@click.option("--quiet", is_flag=True, help="no progress bars")
@click.option(
    "--release",
    "release_key",
    default=DEFAULT_RELEASE,
    show_default=True,
    help="which release's file names and schemas to write: male-cns:v0.9 or male-cns:v1.0 (or v1.0)",
)
def synth(out_dir, scale, seed, force, no_morphology, quiet, release_key):
    """Write a synthetic Male CNS release (real file names and schemas) to OUT_DIR."""
    from flatprint.synth import synthesize

    manifest = synthesize(
        out_dir,
        scale=scale,
        seed=seed,
        progress=not quiet,
        force=force,
        morphology=not no_morphology,
        release=release_key,
    )
    table = Table(title=f"synthetic release in {out_dir} ({manifest['seconds']} s)")
    for col in ("file", "rows", "MB"):
        table.add_column(col, justify="right" if col != "file" else "left")
    for f in manifest["files"]:
        table.add_row(f["file"], f"{f['rows']:,}", f"{f['bytes'] / 1e6:.1f}")
    console.print(table)


@main.command()
@click.argument("release_dir", type=click.Path(path_type=Path))
@click.argument("store", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="replace an existing store")
@click.option("--dataset", default=None, help="NAME:TAG of the dataset (default: the release's, e.g. male-cns:v1.0)")
@click.option(
    "--release", "release_key", default=None, help="the release RELEASE_DIR holds (default: found from its file names)"
)
@click.option(
    "--memory-limit",
    default="6GB",
    show_default=True,
    help="memory budget while building (DuckDB's own limit is 1.25 GiB less, for what Python holds)",
)
@click.option("--quiet", is_flag=True, help="no progress bars")
def ingest(release_dir, store, force, dataset, release_key, memory_limit, quiet):
    """Validate RELEASE_DIR and build the store file STORE from it (atomic)."""
    from flatprint.ingest import ingest_release

    result = ingest_release(
        release_dir,
        store,
        force=force,
        dataset=dataset,
        progress=not quiet,
        memory_limit=memory_limit,
        release=release_key,
    )
    total_rows = sum(result["rows"].values())
    console.print(
        f"[green]ingested[/green] {total_rows:,} rows from {release_dir} into {store} in "
        f"{result['seconds']:.1f} s ({result['rows_per_second']:,.0f} rows/s, "
        f"{result['source_bytes'] / 1e6 / result['seconds']:.1f} MB/s); store {result['store_bytes'] / 1e6:.1f} MB"
    )
    _print_summary(store)


@main.command()
@click.argument("store", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def info(store, as_json):
    """Dataset, version, provenance, row counts, ROIs and size of a store."""
    _print_summary(store, as_json)


def _print_summary(store_path, as_json: bool = False):
    from flatprint.store import Store

    store = Store.open(store_path)
    try:
        s = store.summary()
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(s, indent=1))
        return
    table = Table(title=f"{s['dataset']}  ({s['path']}, {s['bytes'] / 1e6:.1f} MB)", show_header=False)
    table.add_column("what")
    table.add_column("value")  # text reads from the left; counts are right-aligned so digits line up

    def number(text: str) -> Text:
        return Text(text, justify="right")

    table.add_row("description", s["description"] or "")
    known = releases()
    if s["dataset"] in known:  # a store of a registered release: which one, and when it was published
        table.add_row("release", f"{known[s['dataset']].title} (published {known[s['dataset']].released})")
    for key, value in s["counts"].items():
        table.add_row(key, number(f"{value:,}"))
    table.add_row("ROIs (primary)", number(f"{s['rois']:,} ({s['primary_rois']})"))
    table.add_row("T-bars / PSDs", number(f"{s['totalPreCount']:,} / {s['totalPostCount']:,}"))
    table.add_row("ingested", s["ingested_at"] or "")
    table.add_row("source checksum", (s["source_checksum"] or "")[:16])
    console.print(table)


@main.command()
@click.option("--scale", default=0.01, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--rebuild", is_flag=True, help="make the demo release and store again")
@click.option("--serve/--no-serve", default=True, show_default=True, help="end by serving the store")
@click.option("--port", default=8443, show_default=True, type=int)
def demo(scale, seed, rebuild, serve, port):
    """Synthesize a small release, ingest it under $FLATPRINT_HOME/demo, show its summary and serve it."""
    from flatprint.ingest import ingest_release, store_is_current
    from flatprint.store import flatprint_home
    from flatprint.synth import synthesize

    home = flatprint_home() / "demo"
    release = home / "release"
    store = home / "male-cns-v0.9.duckdb"
    if rebuild or not (release / "manifest.json").exists():
        console.print(f"synthesizing a {scale:g}-scale release in {release} ...")
        synthesize(release, scale=scale, seed=seed, force=True)
    if rebuild or not store.exists() or not store_is_current(store):  # older layouts are rebuilt
        console.print(f"ingesting into {store} ...")
        ingest_release(release, store, force=True)
    _print_summary(store)
    console.print(f"\nstore: {store}")
    activate = activation_command()
    if activate:
        console.print(
            "In another shell, activate the venv first (for `flatprint` and `from flatprint import`):",
            highlight=False,
            soft_wrap=True,
        )
        console.print(f"  {activate}", highlight=False, soft_wrap=True)
    console.print(
        f'library: python -c "from flatprint import Client, fetch_neurons; '
        f"Client('{store}'); print(fetch_neurons('DNge104')[0])\"",
        highlight=False,
        soft_wrap=True,
    )
    if serve:
        from flatprint.server import serve as run

        console.print("starting the server (Ctrl-C stops it) ...")
        run([str(store)], port=port, echo=click.echo)


def activation_command() -> str | None:
    """The shell line that puts this interpreter's virtualenv on PATH, or None outside a virtualenv."""
    if sys.prefix == sys.base_prefix:
        return None
    return f"source {shlex.quote(str(Path(sys.prefix) / 'bin' / 'activate'))}"


@main.command()
@click.argument("stores", nargs=-1, required=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8443, show_default=True, type=int)
@click.option("--http", is_flag=True, help="plain HTTP (behind a TLS-terminating proxy)")
@click.option("--timeout", default=60.0, show_default=True, type=float, help="per-query limit in seconds")
@click.option("--workers", default=4, show_default=True, type=int, help="queries run at once")
@click.option("--auth", type=click.Path(dir_okay=False), help="tokens.json (required off loopback)")
@click.option(
    "--memory-budget", help="memory for the whole server, e.g. 8GiB (default: $FLATPRINT_MEMORY_BUDGET or 8GiB)"
)
def serve(stores, host, port, http, timeout, workers, auth, memory_budget):
    """Serve STORE... (PATH or PATH=NAME:TAG) as a neuPrint server over HTTPS."""
    from flatprint.server import serve as run

    run(
        list(stores),
        host=host,
        port=port,
        http=http,
        timeout=timeout,
        workers=workers,
        auth=auth,
        echo=click.echo,
        memory_budget=memory_budget,
    )


# ------------------------------------------------------------------------------------------ download
def _split_names(_ctx, _param, values) -> tuple[str, ...] | None:
    if values is None:
        return None
    names: list[str] = []
    for value in values if isinstance(values, tuple) else (values,):
        names += [name.strip() for name in value.split(",") if name.strip() and name.strip() != "none"]
    return tuple(names)


@main.command("download")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--release", "release_key", default=DEFAULT_RELEASE, show_default=True, help="Release to download (dataset:tag)."
)
@click.option(
    "--tables",
    default=None,
    callback=_split_names,
    metavar="NAMES",
    help="Comma-separated tables: annotations, neurotransmitters, stats, weights, syn-points, "
    "syn-partners, tbar-nt (default: all seven; 'none' for none).",
)
@click.option(
    "--skeletons",
    multiple=True,
    callback=_split_names,
    metavar="VARIANT",
    help="Skeleton directories: swc, precomputed, mirrored-swc, mirrored-precomputed, "
    "unisex-template (repeat or comma-separate).",
)
@click.option("--rois", is_flag=True, help="Also download the ROI volumes (neuroglancer precomputed).")
@click.option(
    "--mirror",
    metavar="URL",
    help="Replace https://storage.googleapis.com in every URL (a local copy of the bucket, a cache).",
)
@click.option(
    "--ingest",
    "ingest_store",
    type=click.Path(path_type=Path),
    metavar="STORE",
    help="Build a flatprint store at STORE once the download is complete.",
)
@click.option(
    "--workers",
    default=DownloadOptions.workers,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Parallel ranged requests for large files.",
)
@click.option(
    "--directory-workers",
    default=DownloadOptions.directory_workers,
    show_default=True,
    type=click.IntRange(1, 128),
    help="Parallel requests for files of a directory.",
)
@click.option("--dry-run", is_flag=True, help="Print the plan and the space needed, download nothing.")
def download_command(
    dest: Path,
    release_key: str,
    tables,
    skeletons,
    rois: bool,
    mirror: str | None,
    ingest_store: Path | None,
    workers: int,
    directory_workers: int,
    dry_run: bool,
) -> None:
    """Download a release (tables, skeletons, ROI volumes) into DEST; re-run to resume."""
    options = DownloadOptions(workers=workers, directory_workers=directory_workers)
    try:
        if ingest_store is not None:  # fail now rather than after hours of downloading
            missing = missing_tables(dest, release_key, tables)
            if missing:
                raise ReleaseError(
                    f"--ingest needs every table, but these are neither selected nor in {dest}: {', '.join(missing)}"
                )
        download_release(
            dest,
            release_key,
            tables=tables,
            skeletons=skeletons or (),
            rois=rois,
            mirror=mirror,
            options=options,
            dry_run=dry_run,
        )
        if ingest_store is not None and not dry_run:
            from flatprint.ingest import ingest_release

            ingest_release(dest, ingest_store, force=False)  # it finds the release from the file names
    except ReleaseError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        click.echo("\nInterrupted; partial files are kept. Run the same command again to resume.", err=True)
        raise SystemExit(130) from None


# ---------------------------------------------------------------------------------------- indirect
def _neuron_list(text: str | None):
    """'12781,556329' -> body ids; 'DNge104,LC4' -> type/instance names; empty -> None (every neuron)."""
    items = [t.strip() for t in (text or "").split(",") if t.strip()]
    if not items:
        return None
    if all(t.isdigit() for t in items):
        return [int(t) for t in items]
    return items


@main.command()
@click.argument("store", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--sources", help="body ids or type/instance names, comma-separated (default: every neuron)")
@click.option("--targets", help="body ids or type/instance names, comma-separated (default: every neuron)")
@click.option("--hops", default=3, show_default=True, type=int)
@click.option("--groupby", default="type", show_default=True, type=click.Choice(["type", "instance", "neuron"]))
@click.option("--normalize", default="input", show_default=True, type=click.Choice(["input", "output"]))
@click.option("--signed", is_flag=True, help="sign each step by the presynaptic neuron's predictedNt")
@click.option("--all-segments", is_flag=True, help="every segment as a partner, not just :Neuron bodies")
@click.option("--min-fraction", default=0.0, show_default=True, type=float, help="prune weaker matrix entries")
@click.option("--min-weight", default=0.0, show_default=True, type=float, help="drop result rows below this |weight|")
@click.option("--per-hop", is_flag=True, help="rank per hop instead of summed over hops 1..k")
@click.option("--top", default=30, show_default=True, type=int, help="rows printed")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="write every row as CSV")
def indirect(
    store,
    sources,
    targets,
    hops,
    groupby,
    normalize,
    signed,
    all_segments,
    min_fraction,
    min_weight,
    per_hop,
    top,
    csv_path,
):
    """Effective connectivity from sources to targets over 1..HOPS connections, ranked (fetch_indirect)."""
    import time

    from flatprint.query import Client
    from flatprint.query.indirect import fetch_indirect

    client = Client(store)
    started = time.perf_counter()
    hop_df, summed = fetch_indirect(
        _neuron_list(sources),
        _neuron_list(targets),
        hops=hops,
        groupby=None if groupby == "neuron" else groupby,
        normalize=normalize,
        signed=signed,
        neurons_only=not all_segments,
        min_fraction=min_fraction,
        min_weight=min_weight,
        client=client,
    )
    seconds = time.perf_counter() - started
    df = hop_df if per_hop else summed
    if csv_path:
        df.to_csv(csv_path, index=False)
    what = "per hop" if per_hop else f"summed over hops 1-{hops}"
    table = Table(title=f"effective {normalize} fractions, {what}: {len(df):,} rows ({seconds:.2f} s)")
    table.add_column("rank", justify="right")
    for col in df.columns:
        table.add_column(col, justify="right" if col in ("hop", "weight") or col.startswith("bodyId") else "left")
    for rank, row in enumerate(df.head(top).itertuples(index=False), start=1):
        table.add_row(str(rank), *[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)
    client.close()


# -------------------------------------------------------------------------------------------- diff
@main.command()
@click.argument("old", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--min-weight-change",
    default=10.0,
    show_default=True,
    type=float,
    help="report a type pair's weight change of at least this many synapses ...",
)
@click.option(
    "--min-relative-change",
    default=0.2,
    show_default=True,
    type=float,
    help="... and at least this fraction of its old weight",
)
@click.option(
    "--min-share",
    default=0.5,
    show_default=True,
    type=float,
    help="a body whose points went more than this share into another is mapped to it (merges, splits)",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="write every table as CSV and Parquet into this directory",
)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), help="write a PNG figure")
@click.option("--memory-limit", default="4GB", show_default=True, help="DuckDB memory limit")
@click.option("--top", default=5, show_default=True, type=int, help="largest changes listed per kind")
def diff(old, new, min_weight_change, min_relative_change, min_share, out_dir, plot_path, memory_limit, top):
    """What changed from store OLD to store NEW: bodies merged, split, added, removed; type, instance,
    class and status changes; type-pair connection weight changes."""
    from flatprint.query.diff import diff_stores

    result = diff_stores(
        old,
        new,
        min_weight_change=min_weight_change,
        min_relative_change=min_relative_change,
        min_share=min_share,
        memory_limit=memory_limit,
    )  # errors: one line, exit 1 (FlatprintGroup)
    click.echo(result.summary(top=top))
    click.echo(f"({result.seconds:.1f} s)")
    if out_dir:
        written = result.write(out_dir)
        click.echo(f"{len(written)} files in {out_dir}")
    if plot_path:
        result.figure(plot_path)
        click.echo(f"figure: {plot_path}")


def _register_optional_commands():
    from flatprint.export.cli import export_group

    main.add_command(export_group, "export")


_register_optional_commands()

if __name__ == "__main__":
    main()
