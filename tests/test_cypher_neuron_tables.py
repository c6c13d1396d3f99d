"""Patterns between two :Neuron nodes read the neuron-only tables (neurons, neuron_connections,
neuron_connection_rois; built at ingest): the answers stay those of pandas on the raw feathers.

fetch_adjacencies sends ``MATCH (n:Neuron)-[e:ConnectsTo]->(m:Neuron)`` with a bodyId list on one
side; the other side's partners that are not neurons must not appear, and a pattern with a
:Segment end must still see them.
"""

from __future__ import annotations

import json

import oracle
import pandas as pd
import pytest
from test_cypher_engine import Frames

from flatprint.cypher.engine import execute
from flatprint.cypher.parser import parse
from flatprint.cypher.planner import narrow_to_neurons, plan_match
from flatprint.cypher.schema import model_of
from flatprint.store import Store

ADJACENCIES = """
    MATCH (n:Neuron)-[e:ConnectsTo]->(m:Neuron)
    WHERE {side}.bodyId in [{ids}]
    WITH n,m,e, true as _
    RETURN n.bodyId as bodyId_pre,
           m.bodyId as bodyId_post,
           e.weight as weight,
           coalesce(e.weightHP, 0) as weightHP,
           e.roiInfo as roiInfo
"""


@pytest.fixture(scope="module")
def frames(release_factory):
    return Frames(release_factory(0))


@pytest.fixture(scope="module")
def store(store_factory):
    opened = Store.open(store_factory(0))
    yield opened
    opened.close()


def expected_roi_infos(rows: pd.DataFrame, points: pd.DataFrame, chains: dict) -> dict:
    """roiInfo per body pair from syn-partners rows: post = PSDs whose point lies in the ROI (its
    primary ROI's chain and its major ROI), pre = distinct T-bars."""
    major = points.set_index(["x", "y", "z"])["major"].astype(str)
    rows = rows.assign(
        major_post=major.reindex(pd.MultiIndex.from_arrays([rows.x_post, rows.y_post, rows.z_post])).to_numpy()
    )
    out: dict = {}
    for (a, b), group in rows.groupby(["body_pre", "body_post"]):
        info: dict = {}
        for (roi_name, major_name), sub in group.groupby([group["primary_post"].astype(str), "major_post"]):
            rois = set(chains.get(roi_name, [])) | ({major_name} if major_name != "<unspecified>" else set())
            for roi in rois:
                entry = info.setdefault(roi, [set(), 0])
                entry[0].update(zip(sub.x_pre, sub.y_pre, sub.z_pre))
                entry[1] += len(sub)
        out[(int(a), int(b))] = {roi: {"pre": len(t), "post": n} for roi, (t, n) in info.items()}
    return out


@pytest.mark.parametrize("side", ["n", "m"])
def test_adjacencies_between_neurons_match_pandas(store, frames, release_factory, side):
    """Weights and roiInfo of the connections between neurons, one side's bodies listed (the body_pre
    and the body_post sorted copies), equal pandas; partners that are not neurons are left out."""
    neurons = set(frames.neurons.bodyId.astype("int64"))
    w = frames.weights
    column = "body_pre" if side == "n" else "body_post"
    # the neurons with the most connections to non-neurons: a wrong table would show them
    to_others = w[w.body_pre.isin(neurons) != w.body_post.isin(neurons)]
    ids = [int(b) for b in to_others[column].value_counts().index if b in neurons][:25]
    assert len(ids) == 25
    result = execute(store, ADJACENCIES.format(side=side, ids=", ".join(map(str, ids))))
    got = {(r[0], r[1]): (r[2], json.loads(r[4])) for r in result.data}
    want = w[w[column].isin(ids) & w.body_pre.isin(neurons) & w.body_post.isin(neurons)]
    assert len(want) > 20 and len(got) == len(result.data)
    assert {k: v[0] for k, v in got.items()} == {
        (int(a), int(b)): int(n) for a, b, n in zip(want.body_pre, want.body_post, want.weight)
    }
    p = frames.partners
    pairs = set(got)
    mask = [(a, b) in pairs for a, b in zip(p.body_pre, p.body_post)]
    infos = expected_roi_infos(p[mask], frames.points, oracle.roi_chains(release_factory(0)))
    assert {k: v[1] for k, v in got.items()} == infos


def test_a_segment_end_still_sees_every_partner(store, frames):
    """(n:Neuron)-[:ConnectsTo]->(m:Segment) reads every connection of n, neuron or not."""
    w = frames.weights
    neurons = set(frames.neurons.bodyId.astype("int64"))
    others = w[w.body_pre.isin(neurons) & ~w.body_post.isin(neurons)]
    body = int(others.body_pre.value_counts().index[0])
    for label, want in (
        ("Segment", w[w.body_pre == body]),
        ("Neuron", w[(w.body_pre == body) & w.body_post.isin(neurons)]),
    ):
        text = f"MATCH (n:Neuron)-[e:ConnectsTo]->(m:{label}) WHERE n.bodyId = {body} RETURN m.bodyId, e.weight"
        got = sorted(tuple(r) for r in execute(store, text).data)
        assert got == sorted((int(b), int(n)) for b, n in zip(want.body_post, want.weight))
    assert len(others[others.body_pre == body]) > 0


def test_undirected_between_neurons(store, frames):
    """An undirected pattern between neurons counts each connection of the body once per direction
    (an autapse once)."""
    w = frames.weights
    neurons = set(frames.neurons.bodyId.astype("int64"))
    body = int(w[w.body_pre.isin(neurons) & w.body_post.isin(neurons)].body_pre.value_counts().index[0])
    between = w[w.body_pre.isin(neurons) & w.body_post.isin(neurons)]
    touching = between[(between.body_pre == body) | (between.body_post == body)]
    text = f"MATCH (n:Neuron)-[e:ConnectsTo]-(m:Neuron) WHERE n.bodyId = {body} RETURN count(*)"
    assert execute(store, text).data == [[len(touching)]]


def test_neuron_patterns_read_the_neuron_tables(store):
    """The plan of a pattern between :Neuron nodes reads the neuron-only copies; with a :Segment end
    it reads the full tables."""
    model = model_of(store)
    assert model.neuron_tables

    def sql(text):
        match = parse(text).parts[0].clauses[0]
        plan = plan_match(
            match.patterns, match.where, model, bound_kinds={}, bound_values={}, params={}, needed_props=set()
        )
        return plan.sql

    both = sql("MATCH (n:Neuron)-[e:ConnectsTo]->(m:Neuron) WHERE m.bodyId = 1 RETURN e")
    assert "neuron_connections_by_post" in both and "neurons n" in both and "segments" not in both
    mixed = sql("MATCH (n:Neuron)-[e:ConnectsTo]->(m:Segment) WHERE n.bodyId = 1 RETURN e")
    assert "neuron_connections" not in mixed and "connections c" in mixed and "segments" in mixed


@pytest.mark.parametrize("with_other", [False, True])
def test_segment_list_to_neurons(store, frames, with_other):
    """fetch_adjacencies' ``(n:Segment)-[e:ConnectsTo]->(m:Neuron)`` with a bodyId list: when every
    listed body is a neuron the neuron-only copies answer (checked first); a listed body that is no
    neuron keeps the full tables, and its connections to neurons are in the answer."""
    w = frames.weights
    neurons = set(frames.neurons.bodyId.astype("int64"))
    to_neurons = w[w.body_post.isin(neurons)]
    ids = [int(b) for b in to_neurons[to_neurons.body_pre.isin(neurons)].body_pre.value_counts().index[:10]]
    if with_other:
        ids.append(int(to_neurons[~to_neurons.body_pre.isin(neurons)].body_pre.value_counts().index[0]))
    text = (
        f"MATCH (n:Segment)-[e:ConnectsTo]->(m:Neuron) WHERE n.bodyId in [{', '.join(map(str, ids))}] "
        "WITH n,m,e, true as _ RETURN n.bodyId as bodyId_pre, m.bodyId as bodyId_post, e.weight as weight, "
        "e.roiInfo as roiInfo"
    )
    got = sorted((r[0], r[1], r[2]) for r in execute(store, text).data)
    want = to_neurons[to_neurons.body_pre.isin(ids)]
    assert got == sorted((int(a), int(b), int(n)) for a, b, n in zip(want.body_pre, want.body_post, want.weight))
    assert any(a == ids[-1] for a, _, _ in got)

    model = model_of(store)
    match = parse(text).parts[0].clauses[0]
    plan = plan_match(
        match.patterns, match.where, model, bound_kinds={}, bound_values={}, params={}, needed_props=set()
    )
    cursor = store.cursor()
    narrow_to_neurons(plan, lambda sql: cursor.execute(sql).fetchall())
    assert ("neuron_connections" in plan.sql) is not with_other
    assert plan.rels["e"].neurons is not with_other


def test_roi_info_of_pairs_with_split_tbars(store, frames, release_factory):
    """Pairs where one T-bar's PSDs on its partner lie in several ROIs (the ingest takes these "split"
    T-bars apart from the rest): roiInfo pre counts each T-bar once per ROI, post counts PSDs, as
    pandas on syn-partners says, for bodies of any kind."""
    p = frames.partners
    tbar = [p.body_pre, p.body_post, p.x_pre, p.y_pre, p.z_pre]
    labels_per_tbar = p.groupby(tbar)["primary_post"].transform(lambda s: s.astype(str).nunique())
    split_pairs = p[labels_per_tbar > 1][["body_pre", "body_post"]].drop_duplicates().head(40)
    assert len(split_pairs) >= 10, "the synthetic release should have T-bars split across ROIs"
    ids = sorted({int(b) for b in split_pairs.body_pre})
    text = f"MATCH (n:Segment)-[e:ConnectsTo]->(m:Segment) WHERE n.bodyId IN {ids} RETURN n.bodyId, m.bodyId, e.roiInfo"
    got = {(r[0], r[1]): json.loads(r[2]) for r in execute(store, text).data}
    wanted_pairs = {(int(a), int(b)) for a, b in zip(split_pairs.body_pre, split_pairs.body_post)}
    mask = [(int(a), int(b)) in wanted_pairs for a, b in zip(p.body_pre, p.body_post)]
    want = expected_roi_infos(p[mask], frames.points, oracle.roi_chains(release_factory(0)))
    assert {k: got[k] for k in wanted_pairs} == want
