"""fetch_synapse_connections and fetch_synapses, cell by cell, against pandas on the raw feathers.

The expected frames are built from syn-partners, syn-points and tbar-NT alone: ends located by their
packed point id, ROI names from the points' primary/major columns and the ROI hierarchy, rows in the
order neuprint-python's query gives (body pair, then the ends' positions within their bodies, which
the store numbers by location).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from oracle import load, oracle_segments, point_id, roi_chains

import flatprint
from flatprint import Client, NeuronCriteria as NC, SynapseCriteria as SC
from flatprint.errors import NoMatchWarning

NT_NAMES = ["acetylcholine", "dopamine", "gaba", "glutamate", "histamine", "octopamine", "serotonin"]


@pytest.fixture(scope="module")
def client(store_path):
    c = Client(store_path)
    yield c
    c.close()


def _points(release) -> pd.DataFrame:
    """syn-points by point id, with the T-bars' NT probabilities (a T-bar's row in tbar-NT has the
    same location and body)."""
    points = load(release, "syn-points")
    tbar = load(release, "tbar-nt")
    nt_cols = [f"nt_{n}_prob" for n in NT_NAMES]
    tbar = tbar.set_index("point_id")[["body", *nt_cols]]
    probs = tbar.reindex(points.index)
    same_body = (probs["body"].to_numpy() == points["body"].to_numpy()) & (points["kind"] == "PreSyn").to_numpy()
    for col, name in zip(nt_cols, NT_NAMES):
        points[name] = np.where(same_body, probs[col].to_numpy(), np.nan).astype(np.float32)
    return points


def _roi_names(points: pd.DataFrame, ids, primary_only: bool, chains) -> list:
    primary = points["primary"].astype(str).reindex(ids).to_numpy()
    if primary_only:
        return [None if p == "<unspecified>" else p for p in primary]
    major = points["major"].astype(str).reindex(ids).to_numpy()
    out = []
    for p, m in zip(primary, major):
        rois = set(chains.get(p, [])) if p != "<unspecified>" else set()
        if m != "<unspecified>":
            rois.add(m)
        out.append(sorted(rois) or [None])
    return out


def oracle_synapse_connections(
    release, pre_bodies, post_bodies, *, confidence=0.5, rois=None, min_total_weight=1, primary_only=True, nt=None
) -> pd.DataFrame:
    """fetch_synapse_connections' answer from the feathers: every synapse pair from ``pre_bodies`` to
    ``post_bodies`` whose ends both have conf > ``confidence``, whose body pair has at least
    ``min_total_weight`` synapses (in total and, with ``rois``, summed over the listed ROIs of the post
    ends) and whose post end lies in a listed ROI."""
    partners = load(release, "syn-partners")
    points = _points(release)
    chains = roi_chains(release)
    p = partners[partners.body_pre.isin(pre_bodies) & partners.body_post.isin(post_bodies)].copy()
    p["pre_point"] = point_id(p.x_pre, p.y_pre, p.z_pre).to_numpy()
    p["post_point"] = point_id(p.x_post, p.y_post, p.z_post).to_numpy()
    p["post_rois"] = [set(r) - {None} for r in _roi_names(points, p.post_point, False, chains)]
    weights = load(release, "weights").set_index(["body_pre", "body_post"])["weight"]
    pair = pd.MultiIndex.from_arrays([p.body_pre, p.body_post])
    keep = weights.reindex(pair).to_numpy() >= max(min_total_weight, 1)
    if rois:
        in_rois = p.post_rois.map(lambda s: sum(r in s for r in rois))  # per-ROI weights, summed
        roi_weight = in_rois.groupby([p.body_pre, p.body_post]).transform("sum").to_numpy()
        keep &= roi_weight >= max(min_total_weight, 1)
        keep &= p.post_rois.map(lambda s: bool(s & set(rois))).to_numpy()
    if confidence:
        keep &= (p.conf_pre > confidence).to_numpy() & (p.conf_post > confidence).to_numpy()
    p = p[keep].sort_values(["body_pre", "body_post", "pre_point", "post_point"], kind="stable")
    df = pd.DataFrame(
        {
            "bodyId_pre": p.body_pre.to_numpy(np.int64),
            "bodyId_post": p.body_post.to_numpy(np.int64),
            "roi_pre": pd.Series(_roi_names(points, p.pre_point, primary_only, chains), dtype=object),
            "roi_post": pd.Series(_roi_names(points, p.post_point, primary_only, chains), dtype=object),
        }
    )
    for side in ("pre", "post"):
        for axis in "xyz":
            df[f"{axis}_{side}"] = p[f"{axis}_{side}"].to_numpy(np.int32)
    df = df[["bodyId_pre", "bodyId_post", "roi_pre", "roi_post", *[f"{a}_{s}" for s in ("pre", "post") for a in "xyz"]]]
    df["confidence_pre"] = p.conf_pre.to_numpy(np.float32)
    df["confidence_post"] = p.conf_post.to_numpy(np.float32)
    probs = points[NT_NAMES].reindex(p.pre_point.to_numpy()).to_numpy(np.float32)
    if nt == "all":
        for i, name in enumerate(NT_NAMES):
            df[name] = probs[:, i]
    elif nt == "max":
        missing = np.isnan(probs).any(axis=1)
        best = np.where(missing, 0, np.argmax(np.where(np.isnan(probs), -1, probs), axis=1))
        df["nt"] = pd.Categorical([None if m else NT_NAMES[b] for m, b in zip(missing, best)], NT_NAMES)
        df["ntProb"] = np.where(missing, np.nan, probs.max(axis=1, initial=-1, where=~np.isnan(probs))).astype(
            np.float32
        )
    return df


def assert_same_frame(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Same columns, dtypes, order and cells (lists compared as lists, None as None)."""
    assert got.columns.tolist() == want.columns.tolist()
    assert got.dtypes.to_dict() == want.dtypes.to_dict()
    assert isinstance(got.index, pd.RangeIndex) and len(got) == len(want)
    for col in got.columns:
        g, w = got[col], want[col]
        if g.dtype == object:
            assert [v if isinstance(v, list) else v for v in g] == list(w), col
            assert all(type(a) is type(b) for a, b in zip(g, w)), col  # None stays None, not NaN
        elif isinstance(g.dtype, pd.CategoricalDtype):
            assert list(g.cat.categories) == list(w.cat.categories), col
            assert g.astype(object).tolist() == w.astype(object).tolist(), col
        else:
            np.testing.assert_array_equal(g.to_numpy(), w.to_numpy(), err_msg=col)


def _strongest_pair(release):
    seg = oracle_segments(release)
    neurons = set(seg.index[seg.is_neuron])
    w = load(release, "weights")
    w = w[w.body_pre.isin(neurons) & w.body_post.isin(neurons) & (w.body_pre != w.body_post)]
    top = w.sort_values(["weight", "body_pre", "body_post"], ascending=[False, True, True]).iloc[0]
    return int(top.body_pre), int(top.body_post), seg


def test_pair_matches_the_feathers(client, release_dir):
    pre, post, _ = _strongest_pair(release_dir)
    got = flatprint.fetch_synapse_connections(pre, post, client=client)
    want = oracle_synapse_connections(release_dir, [pre], [post])
    assert len(want) > 20
    assert_same_frame(got, want)


@pytest.mark.parametrize(
    "nt,primary_only,confidence", [(None, True, None), ("all", False, 0.8), ("max", True, 0.0), ("max", False, None)]
)
def test_two_types_match_the_feathers(client, release_dir, nt, primary_only, confidence):
    """All neurons of two types: ends spread over many bodies (many separate syn_id ranges)."""
    pre, post, seg = _strongest_pair(release_dir)
    neurons = seg[seg.is_neuron]
    pre_type, post_type = seg.loc[pre, "type"], seg.loc[post, "type"]
    pre_bodies = neurons.index[neurons.type == pre_type].tolist()
    post_bodies = neurons.index[neurons.type == post_type].tolist()
    sc = SC(primary_only=primary_only, confidence=confidence, client=client)
    got = flatprint.fetch_synapse_connections(NC(type=pre_type), NC(type=post_type), sc, nt=nt, client=client)
    want = oracle_synapse_connections(
        release_dir,
        pre_bodies,
        post_bodies,
        confidence=0.5 if confidence is None else confidence,
        primary_only=primary_only,
        nt=nt,
    )
    assert want.bodyId_pre.nunique() > 1 or want.bodyId_post.nunique() > 1
    assert len(want) > 20
    assert_same_frame(got, want)


@pytest.mark.parametrize("primary_only", [True, False])
def test_sampled_bodies_with_rois_match_the_feathers(client, release_dir, primary_only):
    """Scattered source bodies (far apart in the store), every neuron as target, an ROI filter (with
    nested ROIs: their per-ROI weights are summed for min_total_weight), nt='max'. With
    primary_only=False some ends lie in no ROI at all ([None])."""
    seg = oracle_segments(release_dir)
    neurons = seg.index[seg.is_neuron]
    sources = sorted(np.random.default_rng(5).choice(neurons, 60, replace=False).tolist())
    partners = load(release_dir, "syn-partners")
    post_rois = partners.primary_post[partners.body_pre.isin(sources)].astype(str)
    common = post_rois[post_rois != "<unspecified>"].value_counts().index[:3].tolist()  # the sources' main ROIs
    rois = common if primary_only else [*common[:1], "CentralBrain", "VNC"]
    sc = SC(rois=rois, primary_only=primary_only, client=client)
    got = flatprint.fetch_synapse_connections(NC(bodyId=sources), None, sc, min_total_weight=3, nt="max", client=client)
    want = oracle_synapse_connections(
        release_dir, sources, neurons, rois=rois, min_total_weight=3, primary_only=primary_only, nt="max"
    )
    assert want.bodyId_pre.nunique() > 2 and len(want) > 20
    if not primary_only:
        assert [None] in want.roi_pre.tolist()
    assert_same_frame(got, want)


def test_targets_only_match_the_feathers(client, release_dir):
    """Only target criteria: every neuron upstream of one body."""
    _, post, seg = _strongest_pair(release_dir)
    neurons = seg.index[seg.is_neuron]
    got = flatprint.fetch_synapse_connections(None, NC(bodyId=[post]), nt="all", client=client)
    want = oracle_synapse_connections(release_dir, neurons, [post], nt="all")
    assert want.bodyId_pre.nunique() > 1
    assert_same_frame(got, want)


@pytest.mark.parametrize("nt", [None, "all", "max"])
def test_no_connection_gives_typed_empty_frame(client, release_dir, nt):
    pre, post, _ = _strongest_pair(release_dir)
    want = oracle_synapse_connections(release_dir, [pre], [post], nt=nt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoMatchWarning)
        got = flatprint.fetch_synapse_connections(pre, 1, nt=nt, client=client)  # there is no body 1
    assert_same_frame(got, want.iloc[:0].reset_index(drop=True))


def test_two_types_with_rois_match_the_feathers(client, release_dir):
    """:Neuron criteria on both sides read the neuron-only edge tables, per-ROI weights included."""
    pre, post, seg = _strongest_pair(release_dir)
    neurons = seg[seg.is_neuron]
    pre_type, post_type = seg.loc[pre, "type"], seg.loc[post, "type"]
    pre_bodies = neurons.index[neurons.type == pre_type].tolist()
    post_bodies = neurons.index[neurons.type == post_type].tolist()
    partners = load(release_dir, "syn-partners")
    between = partners[partners.body_pre.isin(pre_bodies) & partners.body_post.isin(post_bodies)]
    rois = between.primary_post.astype(str).value_counts().drop("<unspecified>", errors="ignore").index[:2].tolist()
    sc = SC(rois=rois, client=client)
    got = flatprint.fetch_synapse_connections(
        NC(type=pre_type), NC(type=post_type), sc, min_total_weight=5, nt="all", client=client
    )
    want = oracle_synapse_connections(release_dir, pre_bodies, post_bodies, rois=rois, min_total_weight=5, nt="all")
    assert len(want) > 20
    assert_same_frame(got, want)


@pytest.mark.parametrize("nt", [None, "max"])
def test_few_listed_bodies_with_min_weight_match_the_feathers(client, release_dir, nt):
    """Few bodies listed on both sides (partners read between them directly): pairs lighter than
    min_total_weight are dropped by their number of synapse pairs, and with label='Neuron' a
    listed non-neuron source contributes nothing."""
    seg = oracle_segments(release_dir)
    w = load(release_dir, "weights")
    w = w[w.body_pre != w.body_post]
    neurons = set(seg.index[seg.is_neuron])
    top = w[w.body_pre.isin(neurons) & w.body_post.isin(neurons)].sort_values("weight", ascending=False)
    pre_bodies = sorted(top.body_pre.drop_duplicates().iloc[:3].tolist())
    post_bodies = sorted(top[top.body_pre.isin(pre_bodies)].body_post.drop_duplicates().iloc[:5].tolist())
    other = w[~w.body_pre.isin(neurons) & w.body_post.isin(post_bodies)].body_pre
    assert len(other), "no non-neuron upstream of the chosen targets"
    between = w[w.body_pre.isin(pre_bodies) & w.body_post.isin(post_bodies)].weight
    cut = int(between.median())
    assert (between < cut).any() and (between >= cut).any()
    sources = NC(bodyId=[*pre_bodies, int(other.iloc[0])], label="Neuron", client=client)
    got = flatprint.fetch_synapse_connections(
        sources, NC(bodyId=post_bodies, client=client), min_total_weight=cut, nt=nt, client=client
    )
    want = oracle_synapse_connections(release_dir, pre_bodies, post_bodies, min_total_weight=cut, nt=nt)
    assert want.bodyId_pre.nunique() > 1 and len(want) > 20
    assert_same_frame(got, want)


def _non_neuron_pair(release):
    """The heaviest connection from a segment that is not a :Neuron to a neuron."""
    seg = oracle_segments(release)
    neurons = set(seg.index[seg.is_neuron])
    w = load(release, "weights")
    w = w[~w.body_pre.isin(neurons) & w.body_post.isin(neurons) & (w.body_pre != w.body_post)]
    top = w.sort_values(["weight", "body_pre", "body_post"], ascending=[False, True, True]).iloc[0]
    return int(top.body_pre), int(top.body_post)


@pytest.fixture
def membership_source(request, client):
    """Which in-RAM copy tells the listed bodies' :Neuron membership: the neuron ids read for the
    call ('ids'), the neuron table or the neuron graph (each built before the call)."""
    from flatprint.store.neurongraph import clear_neuron_graph_cache, neuron_graph
    from flatprint.store.neurontable import clear_neuron_table_cache, neuron_table
    from flatprint.store.partners import forget_neuron_body_ids

    clear_neuron_table_cache()
    clear_neuron_graph_cache()
    forget_neuron_body_ids()
    if request.param == "table":
        neuron_table(client.store)
    elif request.param == "graph":
        neuron_graph(client.store)
    yield request.param
    clear_neuron_table_cache()
    clear_neuron_graph_cache()


@pytest.mark.parametrize("membership_source", ["ids", "table", "graph"], indirect=True)
def test_listed_bodies_membership_from_ram(client, release_dir, membership_source):
    """Listed bodies, a neuron and a non-neuron source: :Segment criteria keep the non-neuron's
    synapse pairs, :Neuron criteria drop them, whichever copy of the neuron ids answers; a call
    never builds the neuron table or graph."""
    from flatprint.store.neurongraph import kept_neuron_graph
    from flatprint.store.neurontable import kept_neuron_table

    pre, post, _ = _strongest_pair(release_dir)
    other, other_post = _non_neuron_pair(release_dir)
    targets = NC(bodyId=[post, other_post], client=client)
    got = flatprint.fetch_synapse_connections(NC(bodyId=[pre, other], client=client), targets, client=client)
    want = oracle_synapse_connections(release_dir, [pre, other], [post, other_post])
    assert set(want.bodyId_pre) == {pre, other}
    assert_same_frame(got, want)
    neurons_only = NC(bodyId=[pre, other], label="Neuron", client=client)
    got = flatprint.fetch_synapse_connections(neurons_only, targets, client=client)
    assert_same_frame(got, oracle_synapse_connections(release_dir, [pre], [post, other_post]))
    assert (kept_neuron_table(client.store) is None) == (membership_source != "table")
    assert (kept_neuron_graph(client.store) is None) == (membership_source != "graph")


def test_non_neuron_pair_matches_the_feathers(client, release_dir):
    """A :Segment that is no :Neuron as the source of a pair (looked up in segments)."""
    other, post = _non_neuron_pair(release_dir)
    got = flatprint.fetch_synapse_connections(other, post, nt="max", client=client)
    want = oracle_synapse_connections(release_dir, [other], [post], nt="max")
    assert len(want) > 0
    assert_same_frame(got, want)


def test_unconnected_pair_gives_typed_empty_frame(client, release_dir):
    """Two neurons without a synapse between them: an empty frame of the usual columns, no warning
    (both bodies exist)."""
    seg = oracle_segments(release_dir)
    neurons = seg.index[seg.is_neuron]
    w = load(release_dir, "weights")
    connected = set(zip(w.body_pre, w.body_post))
    pre, post = next((a, b) for a in neurons for b in neurons if a != b and (a, b) not in connected)
    want = oracle_synapse_connections(release_dir, [pre], [post], nt="all")
    assert want.empty
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoMatchWarning)
        got = flatprint.fetch_synapse_connections(pre, post, nt="all", client=client)
    assert_same_frame(got, want.reset_index(drop=True))


def test_pair_with_rois_and_min_weight_match_the_feathers(client, release_dir):
    """One pair with an ROI filter (the connected-pairs path, per-ROI weight) and min_total_weight at
    and just above the pair's weight."""
    pre, post, _ = _strongest_pair(release_dir)
    partners = load(release_dir, "syn-partners")
    between = partners[(partners.body_pre == pre) & (partners.body_post == post)]
    rois = between.primary_post.astype(str).value_counts().drop("<unspecified>", errors="ignore").index[:1].tolist()
    sc = SC(rois=rois, client=client)
    got = flatprint.fetch_synapse_connections(pre, post, sc, client=client)
    want = oracle_synapse_connections(release_dir, [pre], [post], rois=rois)
    assert 0 < len(want) < len(between)
    assert_same_frame(got, want)
    weight = len(between)
    got = flatprint.fetch_synapse_connections(pre, post, min_total_weight=weight, client=client)
    assert_same_frame(got, oracle_synapse_connections(release_dir, [pre], [post]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoMatchWarning)
        got = flatprint.fetch_synapse_connections(pre, post, min_total_weight=weight + 1, client=client)
    assert got.empty


def test_listed_bodies_with_more_criteria_match_the_feathers(client, release_dir):
    """Listed bodies and a type: only the listed bodies of that type (the criteria as a subquery)."""
    pre, post, seg = _strongest_pair(release_dir)
    w = load(release_dir, "weights")
    pre_type = seg.loc[pre, "type"]
    others = w[(w.body_post == post) & (w.body_pre != pre)].body_pre
    other = int(next(b for b in others if seg.type.get(b) != pre_type))
    got = flatprint.fetch_synapse_connections(
        NC(bodyId=[pre, other], type=pre_type, client=client), post, nt="all", client=client
    )
    want = oracle_synapse_connections(release_dir, [pre], [post], nt="all")
    assert len(want) > 0
    assert_same_frame(got, want)


def test_many_listed_bodies_match_the_feathers(client, release_dir):
    """A batch of many listed bodies on both sides (more than the few-bodies path takes)."""
    seg = oracle_segments(release_dir)
    w = load(release_dir, "weights")
    top = w[w.body_pre != w.body_post].sort_values(["weight", "body_pre", "body_post"], ascending=False)
    sources = sorted(set(top.body_pre.iloc[:200].tolist()))[:40]
    targets = sorted(set(top[top.body_pre.isin(sources)].body_post.tolist()) | set(seg.index[:50].tolist()))
    got = flatprint.fetch_synapse_connections(sources, targets, nt="max", client=client)
    want = oracle_synapse_connections(release_dir, sources, targets, nt="max")
    assert want.bodyId_pre.nunique() > 4 and len(want) > 100
    assert_same_frame(got, want)
