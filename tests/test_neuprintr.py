"""neuprintr's calls that go beyond neuprint-python, replayed against the server (neuprintr itself, an R
package, cannot be installed here; see decisions.md) and checked with plain pandas on the release.

- ``neuprint_simple_connectivity`` / ``neuprint_common_connectivity`` POST
  /api/npexplorer/commonconnectivity and read neuPrintHTTP's answer: one row, one column "map", a list
  of one map per (queried neuron, partner) connection. The helpers below do what neuprintr's R code
  does with that list (count each partner's maps, keep those seen once per queried id, fill a matrix
  from each map's single ``<id>_weight`` key; or jsonlite's data frame with NA weights set to 0).
- ``neuprint_connectors`` matches ``(ms:Synapse)-[:SynapsesTo]-(ns)`` (undirected): each synapse
  pair once per direction.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

warnings.filterwarnings("ignore", category=DeprecationWarning)

from oracle import load, oracle_segments, point_id  # noqa: E402

from flatprint.cypher.engine import execute  # noqa: E402

DS = "male-cns:v0.9"
PAIR = [12781, 556329]  # DNge104_R, DNge104_L: at every scale and seed


@pytest.fixture(scope="module")
def store(stores):
    return stores[DS]


def common_connectivity(api, **body) -> list[dict]:
    r = api.post("/api/npexplorer/commonconnectivity", json={"dataset": DS, **body})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["columns"] == ["map"] and len(answer["data"]) == 1 and len(answer["data"][0]) == 1
    return answer["data"][0][0]


def oracle_connections(release, ids, inputs: bool, *, all_segments=False, statuses=(), min_pre=0) -> pd.DataFrame:
    """(queried, partner, weight, name, type) of every connection of the queried bodies, from the feathers."""
    weights = load(release, "weights")
    segments = oracle_segments(release)
    mine, other = ("body_post", "body_pre") if inputs else ("body_pre", "body_post")
    df = weights[weights[mine].isin(ids)].rename(columns={mine: "queried", other: "partner"})
    if not all_segments:
        neurons = set(segments.index[segments["is_neuron"]])
        df = df[df["queried"].isin(neurons)]
    partners = segments.reindex(df["partner"].to_numpy())
    keep = np.ones(len(df), dtype=bool)
    if statuses:
        keep &= partners["status"].isin(statuses).to_numpy()
    if min_pre:
        keep &= (partners["pre"] >= min_pre).to_numpy()
    df = df.assign(name=partners["instance"].to_numpy(), type=partners["type"].to_numpy())[keep]
    return df.astype({"queried": "int64", "partner": "int64", "weight": "int64"})


def as_connections(maps, direction: str) -> pd.DataFrame:
    rows = []
    for m in maps:
        weights = [k for k in m if k.endswith("_weight")]
        assert len(weights) == 1, m  # one queried neuron per map
        assert set(m) == {direction, "name", "type", weights[0]}, m
        assert isinstance(m[direction], str)  # neuPrintHTTP: toString(c.bodyId)
        rows.append((int(weights[0][: -len("_weight")]), int(m[direction]), m[weights[0]], m["name"], m["type"]))
    return pd.DataFrame(rows, columns=["queried", "partner", "weight", "name", "type"])


def same_rows(got: pd.DataFrame, want: pd.DataFrame):
    cols = ["queried", "partner", "weight", "name", "type"]
    got = got[cols].astype(object).where(got[cols].notna(), None)
    want = want[cols].astype(object).where(want[cols].notna(), None)
    key = lambda df: sorted(map(tuple, df.to_numpy().tolist()), key=repr)  # noqa: E731
    assert len(got) == len(want)
    assert key(got) == key(want)


@pytest.mark.parametrize("inputs", [True, False])
def test_one_map_per_connection(api, release_dir, inputs):
    maps = common_connectivity(api, neuron_ids=PAIR, find_inputs=inputs)
    got = as_connections(maps, "input" if inputs else "output")
    want = oracle_connections(release_dir, PAIR, inputs)
    assert len(want) > 10 and want["queried"].nunique() == 2
    same_rows(got, want)


def test_filters_on_the_partner_and_neuron_names(api, release_dir):
    segments = oracle_segments(release_dir)
    statuses = ["Traced", "Anchor"]
    maps = common_connectivity(api, neuron_ids=PAIR, find_inputs=True, statuses=statuses, pre_threshold=5)
    want = oracle_connections(release_dir, PAIR, True, statuses=statuses, min_pre=5)
    assert 0 < len(want) < len(oracle_connections(release_dir, PAIR, True))
    same_rows(as_connections(maps, "input"), want)
    # neuron_names matches the queried neurons by type; the weight key is "<type>_weight"
    maps = common_connectivity(api, neuron_names=["DNge104"], find_inputs=False)
    assert {k for m in maps for k in m if k.endswith("_weight")} == {"DNge104_weight"}
    want = oracle_connections(release_dir, list(segments.index[segments["type"] == "DNge104"]), False)
    assert sorted(int(m["output"]) for m in maps) == sorted(want["partner"])
    bad = api.post("/api/npexplorer/commonconnectivity", json={"dataset": DS, "find_inputs": True})
    assert bad.status_code == 400 and "neuron_ids" in bad.json()["error"]


def test_queried_segments_need_all_segments(api, release_dir):
    segments = oracle_segments(release_dir)
    weights = load(release_dir, "weights")
    fragment = int(weights[~weights["body_post"].isin(segments.index[segments["is_neuron"]])]["body_post"].iloc[0])
    assert common_connectivity(api, neuron_ids=[fragment], find_inputs=True) == []
    maps = common_connectivity(api, neuron_ids=[fragment], find_inputs=True, all_segments=True)
    same_rows(as_connections(maps, "input"), oracle_connections(release_dir, [fragment], True, all_segments=True))


def neuprintr_common_connectivity(maps, bodyids, partner_type) -> pd.DataFrame:
    """What neuprint_common_connectivity does with the list: partners seen once per queried id, a
    matrix (queried x partner) filled from each map's one ``<id>_weight`` entry."""
    names = [d[partner_type] for d in maps]
    counts = pd.Series(names).value_counts()
    common = sorted(counts.index[counts == len(bodyids)])
    m = pd.DataFrame(0, index=[f"{b}_weight" for b in bodyids], columns=common)
    for s in maps:
        if s[partner_type] not in common:
            continue
        row = [k for k in s if k in m.index]
        assert len(row) == 1, s  # R: m[rName, ...] <- s[[rName]] needs exactly one name
        m.loc[row[0], str(s[partner_type])] = s[row[0]]
    m.index = bodyids
    return m


def test_neuprintr_common_connectivity_gets_the_common_partners(api, release_dir):
    maps = common_connectivity(api, neuron_ids=PAIR, statuses=[], find_inputs=True, all_segments=False)
    got = neuprintr_common_connectivity(maps, PAIR, "input")
    want = oracle_connections(release_dir, PAIR, True).pivot(index="queried", columns="partner", values="weight")
    want = want.dropna(axis=1).astype("int64")  # partners of both
    assert want.shape[1] > 0, "the DNge104 pair should share inputs in the synthetic release"
    want.columns = [str(c) for c in want.columns]
    want = want[sorted(want.columns)].loc[PAIR]
    assert list(got.columns) == list(want.columns)
    assert (got.to_numpy() == want.to_numpy()).all()


def neuprintr_simple_connectivity(maps) -> pd.DataFrame:
    """jsonlite's simplifyVector data frame of the maps (missing keys NA), NA weights set to 0,
    the non-weight columns first, as neuprint_simple_connectivity returns it."""
    d = pd.DataFrame.from_records(maps)
    weights = [c for c in d.columns if c.endswith("_weight")]
    others = [c for c in d.columns if not c.endswith("_weight")]
    assert [c for c in d.columns if c.endswith("put")], d.columns  # R: partnercol = grep("put$", ...)
    d[weights] = d[weights].fillna(0).astype("int64")
    return d[others + weights]


@pytest.mark.parametrize("inputs", [True, False])
def test_neuprintr_simple_connectivity_rows(api, release_dir, inputs):
    maps = common_connectivity(api, neuron_ids=PAIR, find_inputs=inputs)
    d = neuprintr_simple_connectivity(maps)
    direction = "input" if inputs else "output"
    want = oracle_connections(release_dir, PAIR, inputs)
    assert len(d) == len(want)  # one row per connection
    assert set(d.columns) == {direction, "name", "type", *(f"{b}_weight" for b in PAIR)}
    for body in PAIR:
        mine = want[want["queried"] == body]
        got = d[d[f"{body}_weight"] > 0]
        assert sorted(zip(got[direction].astype("int64"), got[f"{body}_weight"])) == sorted(
            zip(mine["partner"], mine["weight"])
        )
    # each row carries exactly one queried neuron's weight, the other one's is 0
    assert ((d[[f"{b}_weight" for b in PAIR]] > 0).sum(axis=1) == 1).all()


# ---- neuprint_connectors: (ms:Synapse)-[:SynapsesTo]-(ns), undirected

CONNECTORS = """WITH {ids} AS connectorIds UNWIND connectorIds AS connectorId
MATCH (ms:Synapse) WHERE id(ms) = connectorId
MATCH (ms:Synapse)-[:SynapsesTo]-(ns), (mss:SynapseSet)-[:Contains]->(ms), (nss:SynapseSet)-[:Contains]->(ns),
 (n:Segment)-[:Contains]->(nss), (m:Segment)-[:Contains]->(mss)
RETURN DISTINCT id(ns) as connectorId_1, ns.type as prepost_1, id(ms) as connectorId_2, ms.type as prepost_2,
 n.bodyId as bodyId_1, m.bodyId as bodyId_2, ns.location.x AS x_1 ,ns.location.y AS y_1, ns.location.z AS z_1,
 ns.confidence AS confidence_1, ms.location.x AS x_2 ,ms.location.y AS y_2, ms.location.z AS z_2,
 ms.confidence AS confidence_2"""


def _synapses_of(store, body) -> pd.DataFrame:
    """id(s), location and type of a body's synapses (the connector ids neuprint_get_synapses gives)."""
    rows = execute(
        store,
        f"MATCH (a:Segment)-[:Contains]->(:SynapseSet)-[:Contains]->(s:Synapse) "
        f"WHERE a.bodyId = {body} RETURN id(s), s.location.x, s.location.y, s.location.z, "
        "s.type",
    ).data
    return pd.DataFrame(rows, columns=["id", "x", "y", "z", "type"])


def test_undirected_synapses_to_matches_each_pair_once_per_direction(store, release_dir):
    partners = load(release_dir, "syn-partners")
    assert execute(store, "MATCH (a)-[:SynapsesTo]-(b) RETURN count(*)").data == [[2 * len(partners)]]
    assert execute(store, "MATCH (a:Synapse)-[:SynapsesTo]-(b:Synapse) WHERE a.type = 'pre' RETURN count(*)").data == [
        [len(partners)]
    ]
    # the relationship keeps its direction whichever end the pattern starts from
    mine = _synapses_of(store, PAIR[0])
    ids = mine["id"].tolist()[:40]
    rows = execute(
        store,
        f"MATCH (a:Synapse)-[r:SynapsesTo]-(b) WHERE id(a) IN {ids} "
        "RETURN id(a), a.type, id(startNode(r)), id(endNode(r)), id(b)",
    ).data
    for a, kind, start, end, b in rows:
        assert (start, end) == ((a, b) if kind == "pre" else (b, a))
    # as many rows as the release has partner rows touching these synapses
    points = point_id(mine["x"], mine["y"], mine["z"]).to_numpy()[:40]
    pre = point_id(partners["x_pre"], partners["y_pre"], partners["z_pre"]).to_numpy()
    post = point_id(partners["x_post"], partners["y_post"], partners["z_post"]).to_numpy()
    body = PAIR[0]
    expected = (np.isin(pre, points) & (partners["body_pre"] == body).to_numpy()).sum() + (
        np.isin(post, points) & (partners["body_post"] == body).to_numpy()
    ).sum()
    assert len(rows) == expected > 0


def test_undirected_connects_to_matches_an_autapse_once(store, release_dir):
    weights = load(release_dir, "weights")
    autapses = int((weights["body_pre"] == weights["body_post"]).sum())
    assert execute(store, "MATCH (a)-[:ConnectsTo]-(a) RETURN count(*)").data == [[autapses]]
    assert execute(store, "MATCH (a)-[:ConnectsTo]-(b) RETURN count(*)").data == [[2 * len(weights) - autapses]]


def test_neuprint_connectors(store, release_dir):
    """neuprint_connectors' query for a body's connectors gives every synapse pair they are part of."""
    body = PAIR[0]
    mine = _synapses_of(store, body)
    points = load(release_dir, "syn-points")
    want_points = points[points["body"] == body]
    assert sorted(zip(mine["x"], mine["y"], mine["z"])) == sorted(
        zip(want_points["x"], want_points["y"], want_points["z"])
    )
    sample = pd.concat([mine[mine["type"] == "pre"].head(15), mine[mine["type"] == "post"].head(15)])
    result = execute(store, CONNECTORS.format(ids=sample["id"].tolist()))
    got = pd.DataFrame(result.data, columns=result.columns)
    # neuprintr splits the rows by prepost_1 and renames _1/_2 to _pre/_post: both halves must exist
    assert set(got["prepost_1"]) == {"pre", "post"} and set(got["prepost_2"]) == {"pre", "post"}
    assert (got["prepost_1"] != got["prepost_2"]).all()
    partners = load(release_dir, "syn-partners")
    want = set()
    loc = {int(i): (x, y, z) for i, x, y, z in zip(sample["id"], sample["x"], sample["y"], sample["z"])}
    for kind, mine_side, other_side in (("pre", "pre", "post"), ("post", "post", "pre")):
        for connector in sample[sample["type"] == kind]["id"]:
            x, y, z = loc[int(connector)]
            hit = partners[
                (partners[f"x_{mine_side}"] == x)
                & (partners[f"y_{mine_side}"] == y)
                & (partners[f"z_{mine_side}"] == z)
                & (partners[f"body_{mine_side}"] == body)
            ]
            for r in hit.itertuples():
                want.add(
                    (
                        (getattr(r, f"x_{other_side}"), getattr(r, f"y_{other_side}"), getattr(r, f"z_{other_side}")),
                        other_side,
                        getattr(r, f"body_{other_side}"),
                        int(connector),
                        body,
                    )
                )
    got_set = {((r.x_1, r.y_1, r.z_1), r.prepost_1, r.bodyId_1, r.connectorId_2, r.bodyId_2) for r in got.itertuples()}
    assert len(got) == len(got_set) == len(want) > 0
    assert got_set == want
