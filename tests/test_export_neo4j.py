"""`flatprint export neo4j`: neo4j-admin import CSVs checked against the documented header format
(parsed here, independently of flatprint) and against the raw release feathers (tests/oracle.py)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
from click.testing import CliRunner
from oracle import load, point_id

# ----------------------------------------------------------------------------- neo4j-admin header spec
# neo4j-admin import (Operations Manual, "Import" / "CSV header format"): each header field is
# <name>:<field_type>; field types are ID, START_ID, END_ID (each with an optional "(id-space)"),
# LABEL, TYPE, IGNORE, or a property type, optionally an array ("[]"), optionally followed by a
# "{key:value,...}" configuration for point and temporal types. No type means string.

SPECIAL = {"ID", "START_ID", "END_ID", "LABEL", "TYPE", "IGNORE"}
PROPERTY_TYPES = {
    "int",
    "long",
    "float",
    "double",
    "boolean",
    "byte",
    "short",
    "char",
    "string",
    "point",
    "date",
    "localtime",
    "time",
    "localdatetime",
    "datetime",
    "duration",
}
CRS = {"cartesian", "cartesian-3d", "wgs-84", "wgs-84-3d"}


def parse_field(field: str) -> dict:
    """One header field -> {name, kind ('ID'...'IGNORE' or 'property'), type, array, space, config}."""
    config = None
    m = re.fullmatch(r"(?P<head>.*?)(?P<cfg>\{[^{}]*\})?", field, flags=re.S)
    head, cfg = m["head"], m["cfg"]
    if cfg:
        config = {}
        for part in cfg[1:-1].split(","):
            k, _, v = part.partition(":")
            config[k.strip()] = v.strip()
    name, sep, ftype = head.rpartition(":")
    if not sep:  # no type: a string property
        return {"name": head, "kind": "property", "type": "string", "array": False, "space": None, "config": config}
    space = None
    sm = re.fullmatch(r"(?P<t>[A-Za-z_]+)(\((?P<space>[^()]*)\))?(?P<arr>\[\])?", ftype)
    assert sm, f"unparseable field type in {field!r}"
    t, space, arr = sm["t"], sm["space"], bool(sm["arr"])
    if t in SPECIAL:
        assert not arr and not config, field
        assert space is None or t in ("ID", "START_ID", "END_ID"), field
        return {"name": name, "kind": t, "type": None, "array": False, "space": space, "config": None}
    assert t.lower() in PROPERTY_TYPES, f"unknown property type {t!r} in {field!r}"
    assert space is None, field
    assert name, f"a property needs a name: {field!r}"
    if config is not None:
        assert t.lower() in ("point", "datetime", "time"), f"config only for point/temporal: {field!r}"
    return {"name": name, "kind": "property", "type": t.lower(), "array": arr, "space": None, "config": config}


INT_RANGE = {"byte": 2**7, "short": 2**15, "int": 2**31, "long": 2**63}
POINT_PATTERN = r"\{\s*x\s*:\s*(-?[0-9.eE+-]+)\s*,\s*y\s*:\s*(-?[0-9.eE+-]+)\s*,\s*z\s*:\s*(-?[0-9.eE+-]+)\s*\}"
POINT_RE = re.compile(POINT_PATTERN)


def _all(mask) -> bool:
    return pc.all(mask).as_py() in (True, None)


def check_values(values: pa.ChunkedArray, spec: dict, where: str, array_delimiter: str = ";") -> None:
    """Every non-empty value parses as the field's type (an empty field = property not set)."""
    v = pc.filter(values, pc.not_equal(values, ""))
    if len(v) == 0 or spec["type"] in ("string", "char"):
        return
    if spec["array"]:
        v = pc.list_flatten(pc.split_pattern(v, array_delimiter))
        v = pc.filter(v, pc.not_equal(v, ""))
        if len(v) == 0:
            return
    t = spec["type"]
    if t in INT_RANGE:
        assert _all(pc.match_substring_regex(v, r"^-?[0-9]{1,19}$")), f"{where}: non-integer in {t} column"
        n = pc.cast(v, pa.int64())  # raises on overflow
        lo, hi = pc.min_max(n).values()
        assert lo.as_py() >= -INT_RANGE[t] and hi.as_py() < INT_RANGE[t], f"{where}: out of {t} range"
    elif t in ("float", "double"):
        pc.cast(v, pa.float64())  # raises on anything that is not a number
    elif t == "boolean":
        assert _all(pc.is_in(v, value_set=pa.array(["true", "false"]))), f"{where}: booleans must be true/false"
    elif t == "point":
        assert spec["config"] and spec["config"].get("crs", "").lower() in CRS, f"{where}: point without crs"
        assert _all(pc.match_substring_regex(v, "^" + POINT_PATTERN + "$")), f"{where}: bad point literal"
    else:
        raise AssertionError(f"{where}: type {t} not expected in a flatprint export")


def read_arrow(path: Path, columns=None) -> pa.Table:
    """A CSV with every column as (non-null) strings: what neo4j-admin sees before typing."""
    with open(path, newline="") as fh:
        header = next(csv.reader(fh))
    return pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=16 << 20),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in header},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            include_columns=columns,
        ),
    )


def read_csv(path: Path, usecols=None) -> pd.DataFrame:
    return read_arrow(path, usecols).to_pandas()


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def exported(store_path, tmp_path_factory):
    from flatprint.export.neo4j import export_neo4j

    out = tmp_path_factory.mktemp("neo4j") / "csv"
    result = export_neo4j(store_path, out)
    return out, result


@pytest.fixture(scope="module")
def parsed(exported):
    """{file: {"fields": [...], "specs": [...], "kind": nodes|relationships}} for every CSV."""
    out, _ = exported
    files = {}
    for path in sorted(out.glob("*.csv")):
        with open(path, newline="") as fh:
            header = next(csv.reader(fh))
        specs = [parse_field(f) for f in header]
        kinds = [s["kind"] for s in specs]
        kind = "relationships" if "START_ID" in kinds else "nodes"
        files[path.name] = {"path": path, "fields": header, "specs": specs, "kind": kind}
    return files


# ----------------------------------------------------------------------------- format


def test_header_parser_examples():
    assert parse_field(":ID(Body-ID)") == {
        "name": "",
        "kind": "ID",
        "type": None,
        "array": False,
        "space": "Body-ID",
        "config": None,
    }
    assert parse_field("weight:int")["type"] == "int"
    assert parse_field("primaryRois:string[]")["array"]
    p = parse_field("location:point{crs:cartesian-3D}")
    assert p["type"] == "point" and p["config"] == {"crs": "cartesian-3D"} and p["name"] == "location"
    assert parse_field("AL(L):boolean")["name"] == "AL(L)"
    assert parse_field("HTct(UTct-T3)(L):boolean")["name"] == "HTct(UTct-T3)(L)"
    assert parse_field("roiInfo")["type"] == "string"
    with pytest.raises(AssertionError):
        parse_field("weight:integer")
    with pytest.raises(AssertionError):
        parse_field("x:LABEL[]")


def test_files_and_headers(exported, parsed):
    out, result = exported
    names = set(parsed)
    for prefix in (
        "Neuprint_Meta_",
        "Neuprint_Neurons_",
        "Neuprint_Neuron_Connections_",
        "Neuprint_SynapseSet_",
        "Neuprint_Synapses_",
        "Neuprint_Synapse_Connections_",
        "Neuprint_SynapseSet_to_Synapses_",
        "Neuprint_Neuron_to_SynapseSet_",
        "Neuprint_SynapseSet_to_SynapseSet_",
    ):
        assert any(n.startswith(prefix) for n in names), prefix
    for name, f in parsed.items():
        kinds = [s["kind"] for s in f["specs"]]
        props = [s["name"] for s in f["specs"] if s["kind"] == "property"]
        assert len(props) == len(set(props)), f"{name}: duplicate property"
        if f["kind"] == "nodes":
            assert kinds.count("ID") <= 1 and kinds.count("LABEL") == 1 and "END_ID" not in kinds, name
            assert kinds.count("ID") == 1 or name.startswith("Neuprint_Meta_"), name
        else:
            assert kinds.count("START_ID") == 1 and kinds.count("END_ID") == 1 and kinds.count("TYPE") == 1, name
    conn = parsed[next(n for n in names if n.startswith("Neuprint_Neuron_Connections_"))]["specs"]
    types = {s["name"]: s["type"] for s in conn if s["kind"] == "property"}
    assert types == {"weight": "int", "weightHP": "int", "roiInfo": "string"}
    syn = next(f for n, f in parsed.items() if n.startswith("Neuprint_Synapses_"))
    stypes = {s["name"]: s for s in syn["specs"] if s["kind"] == "property"}
    assert stypes["location"]["type"] == "point" and stypes["location"]["config"]["crs"].lower() == "cartesian-3d"
    assert stypes["confidence"]["type"] == "float" and stypes["type"]["type"] == "string"
    assert {"ntAcetylcholineProb", "ntGabaProb", "ntHistamineProb"} <= set(stypes)
    neurons = next(f for n, f in parsed.items() if n.startswith("Neuprint_Neurons_"))
    ntypes = {s["name"]: s for s in neurons["specs"] if s["kind"] == "property"}
    assert ntypes["bodyId"]["type"] == "long" and ntypes["roiInfo"]["type"] == "string"
    assert ntypes["somaLocation"]["type"] == "point"
    assert {"AL(L)", "CentralBrain", "VNC"} <= {n for n, s in ntypes.items() if s["type"] == "boolean"}
    meta = next(f for n, f in parsed.items() if n.startswith("Neuprint_Meta_"))
    mtypes = {s["name"]: s for s in meta["specs"] if s["kind"] == "property"}
    assert mtypes["primaryRois"]["type"] == "string" and mtypes["primaryRois"]["array"]
    assert mtypes["voxelSize"]["type"] == "float" and mtypes["voxelSize"]["array"]
    assert mtypes["totalPreCount"]["type"] == "long"


def test_values_parse_and_ids_resolve(parsed):
    """Every value parses as its header type; every relationship end is a node id of its ID space;
    node ids are unique per ID space (what neo4j-admin import enforces)."""
    ids: dict[str, list] = {}
    ends: list[tuple[str, str, pa.ChunkedArray]] = []
    for name, f in parsed.items():
        table = read_arrow(f["path"])
        assert table.column_names == f["fields"], name
        for field, spec in zip(f["fields"], f["specs"]):
            col = table[field]
            if spec["kind"] == "property":
                check_values(col, spec, f"{name}:{field}")
            elif spec["kind"] == "ID":
                assert pc.sum(pc.equal(col, "")).as_py() == 0, name
                ids.setdefault(spec["space"], []).extend(col.chunks)
            elif spec["kind"] in ("START_ID", "END_ID"):
                ends.append((name, spec["space"], col))
            elif spec["kind"] in ("LABEL", "TYPE"):
                assert _all(pc.match_substring_regex(col, r"^[A-Za-z0-9_-]+(;[A-Za-z0-9_-]+)*$")), name
    node_ids = {space: pa.chunked_array(chunks, pa.string()) for space, chunks in ids.items()}
    assert set(node_ids) == {"Body-ID", "SynSet-ID", "Syn-ID"}
    for space, arr in node_ids.items():
        assert pc.count_distinct(arr).as_py() == len(arr), f"duplicate node ids in {space}"
    for name, space, col in ends:
        assert space in node_ids, f"{name}: unknown id space {space}"
        assert _all(pc.is_in(col, value_set=node_ids[space].combine_chunks())), f"{name}: dangling {space} ids"


def test_import_script(exported, parsed):
    out, _ = exported
    script = (out / "import.sh").read_text()
    assert "neo4j-admin" in script and "--array-delimiter=';'" in script and "--multiline-fields=true" in script
    pairs = re.findall(r"--(nodes|relationships)=(\S+\.csv)", script)
    assert {p for _, p in pairs} == set(parsed)
    for flag, path in pairs:
        assert flag == parsed[path]["kind"], path
    assert (out / "import.sh").stat().st_mode & 0o111
    manifest = json.loads((out / "manifest.json").read_text())
    assert {f["file"] for f in manifest["files"]} == set(parsed)


# ----------------------------------------------------------------------------- round trip vs the release


def _concat(parsed, prefix, usecols=None):
    return pd.concat(
        [read_csv(f["path"], usecols=usecols) for n, f in parsed.items() if n.startswith(prefix)], ignore_index=True
    )


def test_counts_round_trip(release_dir, parsed):
    stats, ann = load(release_dir, "stats"), load(release_dir, "annotations")
    weights, points, partners = (load(release_dir, t) for t in ("weights", "syn-points", "syn-partners"))

    neurons = _concat(parsed, "Neuprint_Neurons_", usecols=[":ID(Body-ID)", "pre:long", "post:long", ":LABEL"])
    bodies = pd.Index(stats["body"]).union(pd.Index(ann["bodyId"]))
    assert len(neurons) == len(bodies)
    assert set(neurons[":ID(Body-ID)"].astype(np.int64)) == set(bodies)
    s = stats.set_index("body").reindex(bodies)
    a = ann.set_index("bodyId").reindex(bodies)
    named = a[["somaLocation", "class", "type", "instance", "group", "somaSide", "synonyms"]].notna().any(axis=1)
    big = (s["synweight"].fillna(0) >= 100) | (s["pre"].fillna(0) >= 100) | (s["post"].fillna(0) >= 100)
    status = a["status"].astype(object)
    is_neuron = (big | named | status.isin(["Traced", "Anchor"])) & ~status.isin(["Glia", "Unimportant"])
    labels = neurons.set_index(neurons[":ID(Body-ID)"].astype(np.int64))[":LABEL"].str.split(";")
    got_neuron = labels.map(lambda ls: "Neuron" in ls).reindex(bodies)
    assert (got_neuron.to_numpy() == is_neuron.to_numpy()).all()
    assert labels.map(lambda ls: "Segment" in ls).all()
    pre = neurons.set_index(neurons[":ID(Body-ID)"].astype(np.int64))["pre:long"].astype(np.int64)
    assert (pre.reindex(stats["body"]).to_numpy() == stats["pre"].to_numpy()).all()

    conns = _concat(
        parsed,
        "Neuprint_Neuron_Connections_",
        usecols=[":START_ID(Body-ID)", ":END_ID(Body-ID)", "weight:int", "weightHP:int"],
    )
    assert len(conns) == len(weights)
    assert conns["weight:int"].astype(np.int64).sum() == weights["weight"].sum() == len(partners)
    got = conns.astype(np.int64).set_index([":START_ID(Body-ID)", ":END_ID(Body-ID)"]).sort_index()
    exp = weights.set_index(["body_pre", "body_post"])["weight"].sort_index()
    assert (got.index == exp.index).all() and (got["weight:int"].to_numpy() == exp.to_numpy()).all()
    hp = partners[partners["conf_post"] >= 0.7].groupby(["body_pre", "body_post"]).size()
    assert (got["weightHP:int"].to_numpy() == hp.reindex(exp.index, fill_value=0).to_numpy()).all()

    syn = _concat(parsed, "Neuprint_Synapses_", usecols=[":ID(Syn-ID)", "type:string"])
    assert len(syn) == len(points)
    assert (syn["type:string"] == "pre").sum() == (points["kind"] == "PreSyn").sum()
    synto = _concat(parsed, "Neuprint_Synapse_Connections_")
    assert len(synto) == len(partners)
    assert len(_concat(parsed, "Neuprint_SynapseSet_male")) == 2 * len(weights)
    assert len(_concat(parsed, "Neuprint_SynapseSet_to_SynapseSet_")) == len(weights)
    contains = _concat(parsed, "Neuprint_SynapseSet_to_Synapses_")
    # each PSD once (in its post set), each T-bar once per partner body (in that pair's pre set)
    assert len(contains) == len(partners) + len(partners[["x_pre", "y_pre", "z_pre", "body_post"]].drop_duplicates())


def test_synapse_locations_rois_and_nt(release_dir, parsed):
    """Each Synapse node is a release point with its kind and confidence; its file's ROI flags
    include its primary and major ROI; T-bar NT probabilities add up to the tbar-nt table's."""
    points = load(release_dir, "syn-points")
    tbar = load(release_dir, "tbar-nt")
    parts = []
    for i, (_name, f) in enumerate(n for n in parsed.items() if n[0].startswith("Neuprint_Synapses_")):
        df = read_csv(
            f["path"],
            ["location:point{crs:cartesian-3D}", "type:string", "confidence:float", "ntAcetylcholineProb:float"],
        )
        flags = {s["name"] for s in f["specs"] if s["type"] == "boolean"}
        df["file"] = i
        df["flags"] = "|".join(sorted(flags))
        parts.append(df)
    df = pd.concat(parts, ignore_index=True)
    assert len(df) == len(points)
    xyz = df["location:point{crs:cartesian-3D}"].str.extract(POINT_RE).astype(np.int64)
    pid = point_id(xyz[0], xyz[1], xyz[2]).to_numpy()
    assert pd.Index(pid).is_unique and pd.Index(pid).isin(points.index).all()
    pts = points.loc[pid]
    kinds = pts["kind"].astype(str).map({"PreSyn": "pre", "PostSyn": "post"}).to_numpy()
    assert (df["type:string"].to_numpy() == kinds).all()
    assert np.allclose(df["confidence:float"].astype(float).to_numpy(), pts["conf"].to_numpy(), atol=1e-6)
    combos = pd.DataFrame(
        {
            "file": df["file"].to_numpy(),
            "flags": df["flags"].to_numpy(),
            "primary": pts["primary"].astype(str).to_numpy(),
            "major": pts["major"].astype(str).to_numpy(),
        }
    ).drop_duplicates()
    assert combos["file"].is_unique, "a Synapse file mixes ROI combinations"
    for flags, prim, major in combos[["flags", "primary", "major"]].itertuples(index=False):
        assert ({prim, major} - {"<unspecified>"}) <= set(flags.split("|") if flags else []), (flags, prim, major)
    ach = pd.to_numeric(df["ntAcetylcholineProb:float"], errors="coerce")
    assert ach.notna().sum() == tbar["nt_acetylcholine_prob"].notna().sum()
    assert ach.sum() == pytest.approx(float(tbar["nt_acetylcholine_prob"].sum()), rel=1e-5)


def test_meta_row(store_path, parsed):
    from flatprint.store import Store

    f = next(f for n, f in parsed.items() if n.startswith("Neuprint_Meta_"))
    df = read_csv(f["path"])
    assert len(df) == 1
    row = df.iloc[0]
    st = Store.open(store_path)
    try:
        meta = st.meta
    finally:
        st.close()
    assert row["dataset:string"] == meta["dataset"] and row["tag:string"] == meta["tag"]
    assert row["primaryRois:string[]"].split(";") == meta["primaryRois"]
    assert int(row["totalPreCount:long"]) == meta["totalPreCount"]
    assert json.loads(row["roiInfo:string"]) == json.loads(meta["roiInfo"])
    props = json.loads(row["neuronProperties:string"])
    neurons = next(f for n, f in parsed.items() if n.startswith("Neuprint_Neurons_"))
    header_types = {
        s["name"]: s["type"] for s in neurons["specs"] if s["kind"] == "property" and s["type"] != "boolean"
    }
    assert {k: v.split("{")[0] for k, v in props.items()} == header_types


# ----------------------------------------------------------------------------- CLI and atomicity


def test_cli_and_atomic(store_factory, exported, tmp_path):
    """The click group writes a complete export, refuses to overwrite, and leaves nothing behind on errors."""
    from flatprint.export.cli import export_group

    small = store_factory(0, 0.001)
    out = tmp_path / "csv"
    runner = CliRunner()
    res = runner.invoke(export_group, ["neo4j", str(small), str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "import.sh").exists() and "Neuprint_Neurons_" in res.output and "wrote" in res.output
    existing, _ = exported
    before = sorted(p.name for p in existing.iterdir())
    again = runner.invoke(export_group, ["neo4j", str(small), str(existing)])
    assert again.exit_code == 1 and "exists" in again.output
    assert sorted(p.name for p in existing.iterdir()) == before
    forced = runner.invoke(export_group, ["neo4j", "--force", "--quiet", str(small), str(out)])
    assert forced.exit_code == 0 and "Neuprint_Neurons_" not in forced.output
    bad = runner.invoke(export_group, ["neo4j", str(tmp_path / "nope.duckdb"), str(tmp_path / "x")])
    assert bad.exit_code == 1 and "not found" in bad.output and not (tmp_path / "x").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_sigterm_and_stale_directories(store_factory, tmp_path):
    """SIGTERM mid-export removes the temporary directory; a killed export's leftovers are removed by
    the next export into the same OUT."""
    import signal
    import subprocess
    import sys
    import time

    store_path = store_factory(0, 0.001)
    out = tmp_path / "csv"
    code = "import sys; from flatprint.export.neo4j import export_neo4j; export_neo4j(sys.argv[1], sys.argv[2])"
    proc = subprocess.Popen([sys.executable, "-c", code, str(store_path), str(out)])
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".csv.neo4j-*/Neuprint_Neurons_*.csv")):
        time.sleep(0.05)
    assert proc.poll() is None, "export finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert not out.exists() and not list(tmp_path.iterdir())

    stale = tmp_path / ".csv.neo4j-999999999"  # no such process
    stale.mkdir()
    (stale / "junk.csv").write_text("x\n")
    from flatprint.export.neo4j import export_neo4j

    export_neo4j(store_path, out)
    assert not stale.exists() and (out / "import.sh").exists()
