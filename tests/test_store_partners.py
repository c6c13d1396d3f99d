"""store/partners.py: a set of partners rows joined to their ends' synapses rows (by syn_id)."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from oracle import load, point_id

import flatprint.store.partners as partners_module
from flatprint.errors import StoreError
from flatprint.store.partners import partner_ends_sql, partners_of_pairs, synapses_by_id
from flatprint.store.sql import distinct_ids


def test_ends_of_scattered_pairs_are_the_feathers(release_dir, store_path):
    """Pairs from many bodies (ends spread over the whole synapses table): each row's ends are the
    feather's locations and confidences for that pair; an empty set of pairs gives no rows."""
    partners = load(release_dir, "syn-partners")
    with duckdb.connect(str(store_path), read_only=True) as con:
        rows = con.sql("SELECT * FROM partners USING SAMPLE 300 ROWS (reservoir, 7)").to_arrow_table()
        con.register("picked", rows)
        got = con.sql(
            f"""SELECT p.body_pre, p.body_post, a.x AS x_pre, a.y AS y_pre, a.z AS z_pre,
                       b.x AS x_post, b.y AS y_post, b.z AS z_post, a.conf AS conf_pre, b.conf AS conf_post
                FROM {partner_ends_sql("picked", rows.column("pre_id"), rows.column("post_id"))}"""
        ).df()
        empty = pa.table({"pre_id": pa.array([], pa.int64()), "post_id": pa.array([], pa.int64())})
        con.register("none_picked", empty)
        assert con.sql(f"SELECT count(*) FROM {partner_ends_sql('none_picked', [], [])}").fetchall() == [(0,)]
    assert len(got) == 300 and got["body_pre"].nunique() > 50
    key = ["body_pre", "body_post", "x_pre", "y_pre", "z_pre", "x_post", "y_post", "z_post"]
    merged = got.merge(partners[[*key, "conf_pre", "conf_post"]].drop_duplicates(key), on=key, how="left")
    assert merged["conf_pre_y"].notna().all()  # every row is a pair of the feather
    np.testing.assert_array_equal(merged["conf_pre_x"].to_numpy(np.float32), merged["conf_pre_y"].to_numpy(np.float32))
    np.testing.assert_array_equal(
        merged["conf_post_x"].to_numpy(np.float32), merged["conf_post_y"].to_numpy(np.float32)
    )


def test_partners_of_pairs_are_the_feathers_rows(release_dir, store_path):
    """Scattered pairs (and one pair of bodies that never connect): exactly the feather's rows of those
    pairs, in the table's order; each end's synapses row has the feather's location."""
    partners = load(release_dir, "syn-partners")
    pairs = partners[["body_pre", "body_post"]].drop_duplicates().sample(40, random_state=3)
    body_pre = [*pairs.body_pre, int(pairs.body_pre.iloc[0])]
    body_post = [*pairs.body_post, 1]  # no body 1
    with duckdb.connect(str(store_path), read_only=True) as con:
        rows = partners_of_pairs(con, body_pre, body_post)
        ends, at = synapses_by_id(con, rows["pre_id"], "x, y, z")
        with pytest.raises(StoreError, match="syn_id"):
            synapses_by_id(con, [10**15], "x")
    want = partners.merge(pairs, on=["body_pre", "body_post"])
    assert len(rows["pre_id"]) == len(want) >= 40
    order = np.lexsort([rows[c] for c in ("post_id", "pre_id", "body_post", "body_pre")])
    np.testing.assert_array_equal(order, np.arange(len(order)))
    got = sorted(
        zip(
            rows["body_pre"],
            rows["body_post"],
            point_id(ends["x"][at], ends["y"][at], ends["z"][at]),
        )
    )
    assert got == sorted(zip(want.body_pre, want.body_post, point_id(want.x_pre, want.y_pre, want.z_pre)))


@pytest.mark.parametrize("or_ranges,most_ranges", [(4, 1024), (10_000, 10_000), (2, 3)])
def test_synapses_by_id_of_scattered_ids_are_the_feathers(release_dir, store_path, monkeypatch, or_ranges, most_ranges):
    """Ends of pairs from many bodies (hundreds of id ranges): read as one OR filter, as a union of
    one scan per range, and with the ranges merged down to three; each pair's two ends are the
    feather's locations of that pair."""
    monkeypatch.setattr(partners_module, "_OR_RANGES", or_ranges)
    monkeypatch.setattr(partners_module, "_MOST_RANGES", most_ranges)
    partners = load(release_dir, "syn-partners")
    with duckdb.connect(str(store_path), read_only=True) as con:
        rows = con.sql("SELECT * FROM partners USING SAMPLE 400 ROWS (reservoir, 11)").fetchnumpy()
        ids = np.concatenate([rows["pre_id"], rows["post_id"], rows["pre_id"][:5]])  # repeated ids too
        ends, at = synapses_by_id(con, ids, "x, y, z")
    assert len(np.unique(ids)) > 500 and (np.diff(ends["syn_id"]) > 0).all()
    pre, post = at[:400], at[400:800]
    got = set(zip(rows["body_pre"], rows["body_post"], *(ends[a][pre] for a in "xyz"), *(ends[a][post] for a in "xyz")))
    key = ["body_pre", "body_post", "x_pre", "y_pre", "z_pre", "x_post", "y_post", "z_post"]
    want = set(partners[key].itertuples(index=False, name=None))
    assert len(got) == len(set(zip(rows["pre_id"], rows["post_id"]))) and got <= want
    np.testing.assert_array_equal(ends["syn_id"][at], ids)


@pytest.mark.parametrize("offset", [0, 7])
def test_synapses_by_id_when_row_positions_are_not_syn_ids(offset):
    """Ranges filter rowid (a syn_id is its row's position in a store); in a table whose rows sit
    elsewhere (syn_id = position + offset) the rows are read by syn_id instead: the same answer.
    A missing id raises StoreError either way."""
    with duckdb.connect() as con:
        con.execute(
            f"CREATE TABLE synapses AS SELECT i + {offset} AS syn_id, (i * 3)::INTEGER AS x, "
            "CASE WHEN i % 5 = 0 THEN NULL ELSE i / 10 END::FLOAT AS p FROM range(20000) t(i)"
        )
        ids = np.array([12, 19_000, 12, 5_000, 5_001, 8_000, 30, 10_500, 7, 15_000], dtype=np.int64)
        ends, at = synapses_by_id(con, ids, "x, p")
        with pytest.raises(StoreError, match=f"syn_id {20_007 + offset} "):
            synapses_by_id(con, [20_007 + offset, 3 + offset], "x")
    np.testing.assert_array_equal(ends["syn_id"][at], ids)
    np.testing.assert_array_equal(ends["x"][at], (ids - offset) * 3)
    assert ends["p"].mask[at].tolist() == [(i - offset) % 5 == 0 for i in ids]


def test_positions_by_runs_match_a_binary_search():
    """synapses_by_id finds each id among the rows read by runs of consecutive ids: the same
    positions and hits as a binary search over every id read (runs, gaps, ids outside both ends,
    no rows at all)."""
    rng = np.random.default_rng(3)
    for _ in range(500):
        runs = [np.arange(start, start + rng.integers(1, 6)) for start in rng.choice(60, rng.integers(0, 6), False)]
        read = np.unique(np.concatenate([np.zeros(0, np.int64), *runs]).astype(np.int64))
        values = rng.integers(-3, 70, rng.integers(0, 30)).astype(np.int64)
        at, hit = partners_module._positions(read, values)
        np.testing.assert_array_equal(hit, np.isin(values, read))
        np.testing.assert_array_equal(at[hit], np.searchsorted(read, values[hit]))


def test_distinct_ids_of_runs_or_random_values_is_numpys_unique():
    """store.sql.distinct_ids (the neuron answers' unique positions, a partner query's ends) by either
    sort (the stable one for ids in sorted runs, as partners rows give their ends' ids): NumPy's
    unique, for runs, random values, repeats and nothing."""
    rng = np.random.default_rng(17)
    runs = np.concatenate([np.sort(rng.integers(0, 10**9, 500)), rng.integers(0, 10**9, 500)])
    extremes = rng.integers(-(2**62), 2**62, 999)
    for values in ([], [5], [3, 3], [2, 1], runs, np.concatenate([runs, runs[::-1]]), extremes):
        values = np.asarray(values, dtype=np.int64)
        for kind in (None, "stable"):
            got = distinct_ids(values, kind)
            assert got.dtype == values.dtype and np.array_equal(got, np.unique(values))
