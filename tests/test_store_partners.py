"""store/partners.py: a set of partners rows joined to their ends' synapses rows (by syn_id)."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
from oracle import load

from flatprint.store.partners import partner_ends_sql


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
