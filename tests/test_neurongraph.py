"""The neuron graph in RAM (flatprint.store.neurongraph) and the queries it answers (fetch_adjacencies
and fetch_reach between neurons), against pandas on the raw feathers and against the SQL path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from oracle import load, oracle_segments
from test_query_connectivity import compare_conn, oracle_adjacencies

import flatprint
from flatprint import Client, NeuronCriteria as NC
from flatprint.query import connectivity
from flatprint.store import neurongraph
from flatprint.store.cache import BuildOnceCache
from flatprint.store.neurongraph import clear_neuron_graph_cache, neuron_graph


@pytest.fixture
def graph_calls(monkeypatch) -> list:
    """Every neuron_graph() the query layer asks for (so a test knows the graph answered)."""
    calls = []

    def counted(store):
        calls.append(store)
        return neuron_graph(store)

    monkeypatch.setattr(connectivity, "neuron_graph", counted)
    return calls


@pytest.fixture(scope="module")
def oracle(release_dir, neurons):
    """oracle(sources, targets, include_nonprimary=False): the oracle's per-ROI rows between two
    neuron sets, cut from its rows between all neurons (computed once: a pair's rows depend on the
    pair alone)."""
    every = {flag: oracle_adjacencies(release_dir, neurons, neurons, include_nonprimary=flag) for flag in (False, True)}

    def between(sources, targets, include_nonprimary=False):
        rows = every[include_nonprimary]
        return rows[rows.bodyId_pre.isin(sources) & rows.bodyId_post.isin(targets)].reset_index(drop=True)

    return between


def _sql_path(monkeypatch):
    monkeypatch.setattr(connectivity, "USE_NEURON_GRAPH", False)


def _sample(neurons, n, rng) -> list[int]:
    return sorted(rng.choice(neurons, n, replace=False).tolist())


def _neuron_weights(release, neurons) -> pd.DataFrame:
    w = load(release, "weights")
    return w[w.body_pre.isin(neurons) & w.body_post.isin(neurons)]


# ------------------------------------------------------------------------------------------ the arrays
def test_graph_arrays_hold_the_neuron_connections(client, oracle, release_dir, neurons):
    """Bodies, pairs (both orders), weights and per-ROI rows equal the feathers' neuron pairs."""
    g = neuron_graph(client.store)
    assert g.body_ids.tolist() == neurons.tolist()
    w = _neuron_weights(release_dir, neurons).sort_values(["body_pre", "body_post"])
    assert len(w) > 500
    assert g.body_ids[g.pre].tolist() == w.body_pre.tolist()
    assert g.body_ids[g.post].tolist() == w.body_post.tolist()
    assert g.weight.tolist() == w.weight.tolist()
    partners = load(release_dir, "syn-partners")
    hp = partners[partners.conf_post >= 0.7].groupby(["body_pre", "body_post"]).size()
    assert g.weight_hp.tolist() == [int(hp.get((a, b), 0)) for a, b in zip(w.body_pre, w.body_post)]
    # incoming: every neuron's pairs by post, then pre
    by_post = w.sort_values(["body_post", "body_pre"])
    assert g.body_ids[g.pre[g.by_post]].tolist() == by_post.body_pre.tolist()
    some = np.array([0, 3, len(neurons) // 2, len(neurons) - 1])
    for i in some:
        out = g.outgoing(np.array([i]))
        assert set(g.body_ids[g.post[out]]) == set(w.loc[w.body_pre == neurons[i], "body_post"])
        inc = g.incoming(np.array([i]))
        assert set(g.body_ids[g.pre[inc]]) == set(w.loc[w.body_post == neurons[i], "body_pre"])
    # the per-ROI rows of every pair: the primary ROIs' weights, as the oracle counts them
    want = oracle(neurons, neurons)
    want = want[want.roi != "NotPrimary"].set_index(["bodyId_pre", "bodyId_post", "roi"])["weight"]
    rows, local = g.roi_rows(np.arange(len(g.pre)))
    names = g.roi_names[g.roi_code[rows]]
    got = pd.Series(
        g.roi_weight[rows],
        index=pd.MultiIndex.from_arrays(
            [g.body_ids[g.pre[local]], g.body_ids[g.post[local]], names], names=want.index.names
        ),
    )
    got = got[np.isin(names, list(client.primary_rois))].sort_index()
    assert got.index.equals(want.sort_index().index) and (got.to_numpy() == want.sort_index().to_numpy()).all()
    assert list(g.roi_names) == sorted(g.roi_names)
    assert (
        g.nbytes
        == sum(
            a.nbytes
            for a in (g.body_ids, g.pre, g.post, g.weight, g.weight_hp, g.pre_offsets, g.by_post, g.post_offsets)
            + (g.roi_offsets, g.roi_code, g.roi_weight, g.roi_pre, g.answer_offsets, g.answer_code, g.answer_weight)
        )
        + sum(c[0].nbytes for c in g._columns.values() if c is not None)
        + g.derived.nbytes
    )


def test_answer_rows_are_every_pairs_adjacency_rows_in_order(client, oracle, neurons):
    """The rows the graph keeps for fetch_adjacencies: every pair's primary-ROI and NotPrimary rows
    of the oracle (none of weight 0), each pair's heaviest first, ties by ROI name, NotPrimary last."""
    g = neuron_graph(client.store)
    rows, local = g.answer_rows(np.arange(len(g.pre)))
    names = np.append(g.roi_names, "NotPrimary")[g.answer_code[rows]]
    got = pd.DataFrame(
        {
            "bodyId_pre": g.body_ids[g.pre[local]],
            "bodyId_post": g.body_ids[g.post[local]],
            "roi": names,
            "weight": g.answer_weight[rows].astype(np.int64),
        }
    )
    want = oracle(neurons, neurons)
    want = want[want.weight > 0]
    key = ["bodyId_pre", "bodyId_post", "roi"]
    pd.testing.assert_frame_equal(
        got.sort_values(key).reset_index(drop=True),
        want[key + ["weight"]].astype(got.dtypes.to_dict()).sort_values(key).reset_index(drop=True),
    )
    assert (got.weight > 0).all() and (names == "NotPrimary").any()
    # the order, row against the next row of the same pair
    a, b = got.iloc[:-1].reset_index(drop=True), got.iloc[1:].reset_index(drop=True)
    same = (a.bodyId_pre == b.bodyId_pre) & (a.bodyId_post == b.bodyId_post)
    later_pair = (a.bodyId_pre < b.bodyId_pre) | ((a.bodyId_pre == b.bodyId_pre) & (a.bodyId_post < b.bodyId_post))
    tie_ok = (a.weight > b.weight) | (
        (a.weight == b.weight) & (b.roi == "NotPrimary") & (a.roi != "NotPrimary")
        | ((a.weight == b.weight) & (a.roi != "NotPrimary") & (b.roi != "NotPrimary") & (a.roi < b.roi))
    )
    assert (later_pair | (same & tie_ok)).all()


def test_graph_is_built_once_per_store_and_bounded(store_factory, monkeypatch):
    clear_neuron_graph_cache()
    first_client, second_client = Client(store_factory(0)), Client(store_factory(1))
    try:
        first = neuron_graph(first_client.store)
        assert neuron_graph(first_client.store) is first
        second = neuron_graph(second_client.store)
        assert second is not first
        assert neuron_graph(first_client.store) is first and neuron_graph(second_client.store) is second
        monkeypatch.setattr(neurongraph, "KEEP_GRAPHS", 1)
        clear_neuron_graph_cache()
        first = neuron_graph(first_client.store)
        neuron_graph(second_client.store)  # evicts the first store's
        again = neuron_graph(first_client.store)
        assert again is not first
        assert neuron_graph(first_client.store) is again
        clear_neuron_graph_cache()
        assert neuron_graph(first_client.store) is not again
    finally:
        first_client.close()
        second_client.close()


# ------------------------------------------------------------------------------------------ fetch_adjacencies
def _both_paths(client, monkeypatch, graph_calls, *args, **kwargs):
    """(graph answer, SQL answer) of one fetch_adjacencies call; the graph must have answered the first."""
    graph_calls.clear()
    fast = flatprint.fetch_adjacencies(*args, client=client, **kwargs)
    assert graph_calls, "the neuron graph did not answer"
    with monkeypatch.context() as m:
        _sql_path(m)
        graph_calls.clear()
        slow = flatprint.fetch_adjacencies(*args, client=client, **kwargs)
        assert not graph_calls
    for a, b in zip(fast, slow):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    return fast


@pytest.mark.parametrize("size", [1, 7, 40, 200])
def test_adjacencies_of_random_neurons(client, oracle, release_dir, neurons, monkeypatch, graph_calls, size):
    """Random neuron sets, both directions: per-ROI rows equal pandas' and the SQL path's, cell by
    cell (dtypes, order, NotPrimary rows, partner properties)."""
    rng = np.random.default_rng(size)
    for _ in range(3):
        ids = _sample(neurons, size, rng)
        for down in (True, False):
            src, tgt = (NC(bodyId=ids), None) if down else (None, NC(bodyId=ids))
            neurons_df, conn = _both_paths(client, monkeypatch, graph_calls, src, tgt)
            want = oracle(*((ids, neurons) if down else (neurons, ids)))
            compare_conn(conn, want)
            assert neurons_df.bodyId.tolist() == sorted(set(conn.bodyId_pre) | set(conn.bodyId_post))
            if size >= 40:
                assert len(conn) > 20


def _oracle_filtered(release, want, rois, min_roi, min_total):
    """neuprint-python's filters on the oracle's rows: the listed ROIs' rows, pairs whose rows there
    sum to >= min_total, rows >= min_roi, bodies with a synapse in one of the ROIs (the criteria)."""
    w = want[want.roi.isin(rois)]
    pair_total = w.groupby(["bodyId_pre", "bodyId_post"])["weight"].transform("sum")
    w = w[(pair_total >= min_total) & (w.weight >= min_roi)]
    points = load(release, "syn-points")
    in_rois = set(points.loc[points["primary"].astype(str).isin(rois), "body"])
    return w[w.bodyId_pre.isin(in_rois) & w.bodyId_post.isin(in_rois)]


@pytest.mark.parametrize("down", [True, False])
def test_adjacencies_filters_match_pandas_and_sql(client, oracle, release_dir, neurons, monkeypatch, graph_calls, down):
    rng = np.random.default_rng(11 if down else 12)
    for size, min_roi, min_total in ((30, 1, 1), (60, 2, 3), (120, 1, 5), (200, 3, 3)):
        ids = _sample(neurons, size, rng)
        s_ids, t_ids = (ids, neurons) if down else (neurons, ids)
        src, tgt = (NC(bodyId=ids), None) if down else (None, NC(bodyId=ids))
        want = oracle(s_ids, t_ids)
        primary = sorted(set(want.roi) - {"NotPrimary"})
        rois = sorted(rng.choice(primary, min(3, len(primary)), replace=False).tolist())
        _, conn = _both_paths(
            client, monkeypatch, graph_calls, src, tgt, rois=rois, min_roi_weight=min_roi, min_total_weight=min_total
        )
        compare_conn(conn, _oracle_filtered(release_dir, want, rois, min_roi, min_total))
        # thresholds alone (NotPrimary rows count towards the totals)
        _, conn = _both_paths(
            client, monkeypatch, graph_calls, src, tgt, min_roi_weight=min_roi, min_total_weight=min_total
        )
        total = want.groupby(["bodyId_pre", "bodyId_post"])["weight"].transform("sum")
        compare_conn(conn, want[(total >= min_total) & (want.weight >= min_roi)])
        # every ROI level
        _, conn = _both_paths(client, monkeypatch, graph_calls, src, tgt, include_nonprimary=True)
        compare_conn(conn, oracle(s_ids, t_ids, include_nonprimary=True))


@pytest.mark.parametrize("down", [True, False])
def test_adjacencies_totals_match_pandas_and_sql(client, release_dir, neurons, monkeypatch, graph_calls, down):
    """omit_rois: one row per pair with weight and the weight_props asked for."""
    rng = np.random.default_rng(21 if down else 22)
    weights = _neuron_weights(release_dir, neurons)
    partners = load(release_dir, "syn-partners")
    hp = partners[partners.conf_post >= 0.7].groupby(["body_pre", "body_post"]).size()
    for size, min_total, props in ((5, 1, "all"), (50, 2, None), (150, 4, ["weightHP"])):
        ids = _sample(neurons, size, rng)
        src, tgt = (NC(bodyId=ids), None) if down else (None, NC(bodyId=ids))
        _, flat = _both_paths(
            client, monkeypatch, graph_calls, src, tgt, omit_rois=True, min_total_weight=min_total, weight_props=props
        )
        side = weights.body_pre if down else weights.body_post
        w = weights[side.isin(ids) & (weights.weight >= min_total)].sort_values(["body_pre", "body_post"])
        assert flat.bodyId_pre.tolist() == w.body_pre.tolist()
        assert flat.bodyId_post.tolist() == w.body_post.tolist()
        assert flat.weight.tolist() == w.weight.tolist()
        assert flat.columns.tolist() == ["bodyId_pre", "bodyId_post", "weight"] + (["weightHP"] if props else [])
        if props:
            assert flat.weightHP.tolist() == [int(hp.get((a, b), 0)) for a, b in zip(w.body_pre, w.body_post)]


def test_adjacencies_with_criteria_on_the_other_side(client, oracle, release_dir, neurons, monkeypatch, graph_calls):
    """The partner side as criteria (read from the store) or as listed ids, and empty answers."""
    segments = oracle_segments(release_dir)
    typed = segments[segments.is_neuron & segments.type.notna()]
    types = sorted(typed.type.unique())[:12]
    members = typed.index[typed.type.isin(types)].to_numpy()
    rng = np.random.default_rng(5)
    ids = _sample(neurons, 80, rng)
    _, conn = _both_paths(client, monkeypatch, graph_calls, NC(bodyId=ids), NC(type=types))
    compare_conn(conn, oracle(ids, members))
    _, conn = _both_paths(client, monkeypatch, graph_calls, NC(type=types), NC(bodyId=ids))
    compare_conn(conn, oracle(members, ids))
    other = _sample(neurons, 150, rng)
    _, conn = _both_paths(client, monkeypatch, graph_calls, NC(bodyId=ids), NC(bodyId=other))
    compare_conn(conn, oracle(ids, other))
    assert len(conn) > 0
    neurons_df, conn = _both_paths(
        client, monkeypatch, graph_calls, NC(bodyId=ids), None, properties=["type", "instance", "status", "pre"]
    )
    assert neurons_df.columns.tolist() == ["bodyId", "type", "instance", "status", "pre"]
    stats = load(release_dir, "stats").set_index("body")
    assert neurons_df.pre.tolist() == stats.pre.reindex(neurons_df.bodyId, fill_value=0).tolist()
    neurons_df, conn = _both_paths(client, monkeypatch, graph_calls, NC(bodyId=ids), None, min_total_weight=10**6)
    assert len(conn) == 0 and len(neurons_df) == 0


def test_unknown_partner_property_fails_as_before(client, neurons):
    ids = neurons[:20].tolist()
    with pytest.raises(Exception, match="no_such_property"):
        flatprint.fetch_adjacencies(NC(bodyId=ids), None, properties=["no_such_property"], client=client)


def test_a_wrong_graph_row_is_caught(client, oracle, release_dir, neurons, monkeypatch):
    """A graph with one weight off gives a row that pandas does not: the comparisons above can fail."""
    g = neuron_graph(client.store)
    row = int(np.flatnonzero(np.isin(g.roi_names[g.roi_code], list(client.primary_rois)))[0])
    pair = int(np.searchsorted(g.roi_offsets, row, side="right")) - 1
    ids = [int(g.body_ids[g.pre[pair]])]
    broken = g.roi_weight.copy()
    broken[row] += 1
    monkeypatch.setattr(g, "roi_weight", broken)
    _, conn = flatprint.fetch_adjacencies(NC(bodyId=ids), None, client=client, include_nonprimary=True)
    with pytest.raises(AssertionError):
        compare_conn(conn, oracle(ids, neurons, include_nonprimary=True))
    # the primary ROIs' rows the graph keeps in answer order
    broken = g.answer_weight.copy()
    broken[g.answer_offsets[pair]] += 1
    monkeypatch.setattr(g, "answer_weight", broken)
    _, conn = flatprint.fetch_adjacencies(NC(bodyId=ids), None, client=client)
    with pytest.raises(AssertionError):
        compare_conn(conn, oracle(ids, neurons))


# ------------------------------------------------------------------------------------------ fetch_reach
def _oracle_reach(release, start, neurons, hops, min_weight, downstream) -> dict[int, int]:
    """Breadth-first over connectome-weights: bodies reached through neurons, fewest hops."""
    w = load(release, "weights")
    near, far = ("body_pre", "body_post") if downstream else ("body_post", "body_pre")
    w = w[(w.weight >= min_weight) & w[far].isin(neurons)]
    seen = {int(b): 0 for b in start}
    frontier = set(seen)
    for hop in range(1, hops + 1):
        found = set(w.loc[w[near].isin(frontier), far].astype(int)) - set(seen)
        seen.update({b: hop for b in found})
        frontier = found
    return seen


def _reach_both_paths(client, monkeypatch, graph_calls, *args, **kwargs):
    graph_calls.clear()
    fast = flatprint.fetch_reach(*args, client=client, **kwargs)
    assert graph_calls, "the neuron graph did not answer"
    with monkeypatch.context() as m:
        _sql_path(m)
        slow = flatprint.fetch_reach(*args, client=client, **kwargs)
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)
    return fast


@pytest.mark.parametrize("direction", ["downstream", "upstream"])
def test_reach_matches_pandas_and_sql(client, release_dir, neurons, monkeypatch, graph_calls, direction):
    segments = oracle_segments(release_dir)
    rng = np.random.default_rng(31 if direction == "downstream" else 32)
    for size, hops, min_weight in ((1, 3, 1), (10, 2, 1), (40, 2, 3), (100, 1, 2), (5, 4, 5)):
        start = _sample(neurons, size, rng)
        got = _reach_both_paths(client, monkeypatch, graph_calls, NC(bodyId=start), direction, hops, min_weight)
        want = _oracle_reach(release_dir, start, neurons, hops, min_weight, direction == "downstream")
        assert dict(zip(got.bodyId.tolist(), got.hops.tolist())) == want
        assert got[["hops", "bodyId"]].apply(tuple, axis=1).is_monotonic_increasing
        types = segments.type.reindex(got.bodyId)
        assert [None if pd.isna(t) else t for t in got.type] == [None if pd.isna(t) else t for t in types]
        if size >= 10:
            assert len(want) > size


def test_reach_from_a_non_neuron_walks_its_own_edges_first(client, release_dir, neurons, monkeypatch, graph_calls):
    """A starting non-neuron's connections are not in the graph: its first hop comes from SQL."""
    w = load(release_dir, "weights")
    w = w[~w.body_pre.isin(neurons) & w.body_post.isin(neurons)]
    other = int(w.groupby("body_pre")["weight"].sum().idxmax())
    start = _sample(neurons, 3, np.random.default_rng(41)) + [other]
    got = _reach_both_paths(client, monkeypatch, graph_calls, NC(bodyId=start), "downstream", 3, 1)
    want = _oracle_reach(release_dir, start, neurons, 3, 1, True)
    assert dict(zip(got.bodyId.tolist(), got.hops.tolist())) == want
    assert set(w.loc[w.body_pre == other, "body_post"]) <= set(got.bodyId)


# ------------------------------------------------------------------------------------------ connection_matrix
def _oracle_matrix(release, neurons, prop, min_weight, sources=None, targets=None) -> list[tuple]:
    """connection_matrix(prop) between neurons in pandas on the feathers: neuron pairs of weight >=
    min_weight by (pre's prop, post's prop), NULLs left out; rows heaviest first, then pre, post."""
    labels = oracle_segments(release)[prop]
    w = _neuron_weights(release, neurons)
    w = w[w.weight >= min_weight]
    if sources is not None:
        w = w[w.body_pre.isin(sources)]
    if targets is not None:
        w = w[w.body_post.isin(targets)]
    w = w.assign(pre=labels.reindex(w.body_pre).to_numpy(), post=labels.reindex(w.body_post).to_numpy())
    w = w.dropna(subset=["pre", "post"])
    sums = w.groupby(["pre", "post"], observed=True)["weight"].agg(["sum", "size"])
    rows = [(str(pre), str(post), int(s), int(n)) for (pre, post), (s, n) in sums.iterrows()]
    return sorted(rows, key=lambda r: (-r[2], r[0], r[1]))


def _rows(df) -> list[tuple]:
    return list(zip(df.pre.tolist(), df.post.tolist(), df.weight.tolist(), df.connections.tolist()))


def _matrix_both_paths(client, monkeypatch, graph_calls, *args, **kwargs):
    """(graph answer) of one connection_matrix call, equal cell by cell to the SQL path's."""
    graph_calls.clear()
    fast = flatprint.connection_matrix(*args, client=client, **kwargs)
    assert graph_calls, "the neuron graph did not answer"
    with monkeypatch.context() as m:
        _sql_path(m)
        graph_calls.clear()
        slow = flatprint.connection_matrix(*args, client=client, **kwargs)
        assert not graph_calls
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)
    return fast


@pytest.mark.parametrize("prop", ["type", "class", "superclass", "instance"])
def test_matrix_matches_pandas_and_sql(client, release_dir, neurons, monkeypatch, graph_calls, prop):
    for min_weight in (1, 2, 5):
        got = _matrix_both_paths(client, monkeypatch, graph_calls, prop, min_weight=min_weight)
        want = _oracle_matrix(release_dir, neurons, prop, min_weight)
        assert _rows(got) == want
        assert len(want) > (20 if prop in ("type", "instance") else 3)
        assert got.weight.dtype == np.int64 and got.connections.dtype == np.int64
    grouping = neuron_graph(client.store).derived.peek(("pairs grouped by", prop))
    assert grouping.nbytes == sum(
        a.nbytes for a in (grouping.cells, grouping.cell_of_pair, grouping.weight, grouping.connections)
    )
    assert neuron_graph(client.store).derived.nbytes >= grouping.nbytes > 0


@pytest.mark.parametrize("prop", ["type", "class"])
def test_matrix_with_sources_and_targets_matches_pandas_and_sql(
    client, release_dir, neurons, monkeypatch, graph_calls, prop
):
    rng = np.random.default_rng(51)
    segments = oracle_segments(release_dir)
    typed = segments.loc[neurons, "type"].dropna()
    some_types = sorted(rng.choice(typed.unique(), 12, replace=False).tolist())
    of_types = typed.index[typed.isin(some_types)].tolist()
    for size, min_weight in ((30, 1), (150, 2), (400, 1)):
        ids = _sample(neurons, size, rng)
        for sources, targets, src_ids, tgt_ids in (
            (NC(bodyId=ids), None, ids, None),
            (None, NC(bodyId=ids), None, ids),
            (NC(bodyId=ids), NC(type=some_types), ids, of_types),
            (NC(type=some_types), NC(bodyId=ids), of_types, ids),
        ):
            got = _matrix_both_paths(
                client, monkeypatch, graph_calls, prop, sources=sources, targets=targets, min_weight=min_weight
            )
            assert _rows(got) == _oracle_matrix(release_dir, neurons, prop, min_weight, src_ids, tgt_ids)
    got = _matrix_both_paths(client, monkeypatch, graph_calls, prop, sources=NC(bodyId=_sample(neurons, 400, rng)))
    assert len(got) > 3


def test_matrix_of_sources_matching_nothing_is_empty_as_sql_says(client, monkeypatch, graph_calls, neurons):
    with pytest.warns(UserWarning, match="matches no neuron"):
        got = _matrix_both_paths(client, monkeypatch, graph_calls, "type", sources=NC(type="NoSuchType"))
    assert len(got) == 0 and list(got.columns) == ["pre", "post", "weight", "connections"]
    # no pair of such weight: the same empty frame
    assert len(_matrix_both_paths(client, monkeypatch, graph_calls, "class", min_weight=10**6)) == 0


def test_matrix_with_rois_or_segments_stays_in_sql(client, graph_calls):
    """The graph holds neuron pairs' total weights only: ROI filters and :Segment matrices need SQL."""
    roi = sorted(client.primary_rois)[0]
    graph_calls.clear()
    flatprint.connection_matrix("type", rois=[roi], client=client)
    flatprint.connection_matrix("type", neurons_only=False, client=client)
    flatprint.connection_matrix("roi", client=client)
    assert not graph_calls


def test_a_wrong_matrix_weight_is_caught(client, release_dir, neurons, monkeypatch):
    """A graph with one pair's weight off gives a matrix that pandas does not: the comparisons above can fail."""
    g = neuron_graph(client.store)
    types = oracle_segments(release_dir).type
    typed = np.flatnonzero(
        types.reindex(g.body_ids[g.pre]).notna().to_numpy() & types.reindex(g.body_ids[g.post]).notna().to_numpy()
    )
    broken = g.weight.copy()
    broken[typed[0]] += 1
    monkeypatch.setattr(g, "weight", broken)
    monkeypatch.setattr(g, "derived", BuildOnceCache(max_entries=4))  # sums of the broken weights
    for min_weight in (1, 2):
        got = flatprint.connection_matrix("type", min_weight=min_weight, client=client)
        assert _rows(got) != _oracle_matrix(release_dir, neurons, "type", min_weight)


def test_rows_sorted_by_two_keys():
    """fetch_reach's sort is skipped only when rows are in (hops, bodyId) order already."""
    from flatprint.query.connectivity import _sorted_by

    a = np.array
    assert _sorted_by(a([0, 0, 1, 1, 2]), a([5, 9, 1, 7, 0]))
    assert _sorted_by(a([], dtype=np.int64), a([], dtype=np.int64)) and _sorted_by(a([3]), a([1]))
    assert not _sorted_by(a([0, 0, 1]), a([9, 5, 1]))  # bodies out of order within a hop
    assert not _sorted_by(a([1, 0]), a([1, 2]))  # hops out of order
    assert _sorted_by(a([0, 0]), a([4, 4]))  # equal rows keep their order


@pytest.mark.parametrize("pairs", [0, 1, 40, 5000, 2**40])
def test_adjacency_row_order_is_the_three_key_sort(pairs):
    """fetch_adjacencies' rows by pair, heaviest first, then ROI: the one-key sort gives NumPy's
    lexsort order (and falls back to it when the key would not fit in int64)."""
    from flatprint.store.neurongraph import pair_weight_roi_order

    rng = np.random.default_rng(pairs % 97)
    n = min(pairs * 3, 20000)
    rows = np.unique(rng.integers(0, max(min(pairs, 10**6), 1), n) * 300 + rng.integers(0, 300, n))
    local, codes = rows // 300, rows % 300
    if pairs == 2**40:
        local = local * 2**40  # keys beyond int64: the lexsort answers
    weights = rng.integers(1, 10**6, len(rows))
    if len(weights):
        weights[::7] = weights[0]  # ties in weight within pairs
    got = pair_weight_roi_order(local, weights, codes, 301)
    assert got.tolist() == np.lexsort((codes, -weights, local)).tolist()
