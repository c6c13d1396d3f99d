"""Both ways columnar.build turns a column-wise answer into rows give the oracle's rows: straight
from Arrow (answers up to columnar.DIRECT_CELLS cells) and through DuckDB's JSON row texts (larger
ones). Each path is forced in turn on fetch_synapse_connections' and fetch_synapses' Cypher."""

from __future__ import annotations

import numpy as np
import pytest
from test_cypher_columnwise import (  # noqa: F401  (fixtures used by name)
    PAIR_CYPHER,
    SYNAPSES_CYPHER,
    canonical,
    oracle_pair_rows,
    oracle_synapse_rows,
    strong_pair,
    synapse_points,
)

from flatprint.cypher import columnar
from flatprint.cypher.engine import execute


@pytest.mark.parametrize("direct_cells", [0, 10**9], ids=["json-rows", "straight-from-arrow"])
def test_both_row_paths_equal_the_oracle(store, release_dir, synapse_points, strong_pair, monkeypatch, direct_cells):  # noqa: F811
    monkeypatch.setattr(columnar, "DIRECT_CELLS", direct_cells)
    pair = execute(store, PAIR_CYPHER.format(pre=strong_pair[0], post=strong_pair[1]))
    want = canonical(oracle_pair_rows(release_dir, synapse_points, *strong_pair))
    assert pair.arrow is not None and len(want) > 20
    assert canonical(pair.data) == want
    first = pair.data[0]  # ints stay ints, floats floats
    assert all(type(v) is int for v in first[:8]) and all(type(v) is float for v in first[8:10])
    bodies = list(strong_pair)
    synapses = execute(store, SYNAPSES_CYPHER.format(bodies=", ".join(map(str, bodies))))
    assert synapses.arrow is not None
    assert canonical(synapses.data) == canonical(oracle_synapse_rows(release_dir, synapse_points, bodies))


@pytest.mark.parametrize("size", [0, 1, 7, 5_000, columnar.SORT_UNIQUE_ROWS + 1, 50_000])
def test_unique_inverse_is_numpys_unique(size):
    """columnar.unique_inverse against np.unique(return_inverse=True), on both of its sides of
    SORT_UNIQUE_ROWS, with repeats, negatives and the int64 limits."""
    rng = np.random.default_rng(size)
    values = rng.integers(-300, 300, size).astype(np.int64)
    if size > 2:
        values[:2] = [np.iinfo(np.int64).min, np.iinfo(np.int64).max]
    unique, inverse = columnar.unique_inverse(values)
    expected_unique, expected_inverse = np.unique(values, return_inverse=True)
    assert unique.tolist() == expected_unique.tolist()
    assert inverse.dtype == np.int64 and inverse.tolist() == expected_inverse.reshape(-1).tolist()
    assert (unique[inverse] == values).all()
