"""fetch_neurons' criteria answered from the neuron table in RAM (query/neurons.py positions_in_ram):
type/instance values (exact, regex over the distinct values, NULL) and ROI requirements, checked
against pandas on the raw feathers and against the SQL path's whole frames."""

from __future__ import annotations

import dataclasses
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from test_query_neurons import assert_same_frames, oracle_neurons, oracle_roi_counts, table_and_sql_frames

import flatprint
from flatprint import IsNull, NeuronCriteria as NC, NotNull
from flatprint.errors import NoMatchWarning, QueryError
from flatprint.query import neurons as neurons_module
from flatprint.query.criteria import NeuronCriteria


@pytest.fixture(scope="module")
def oracle(release_dir):
    """The release's segments and their per-ROI rows (every level), by pandas on the feathers."""
    segments = oracle_neurons(release_dir)
    neurons = segments[segments.is_neuron]
    return segments, neurons, oracle_roi_counts(release_dir, neurons["bodyId"])


def having(rows, neurons, roi, column=None, minimum=1):
    """Per neuron: a row in ``roi`` (with ``column`` >= ``minimum`` when given)."""
    rows = rows[rows.roi == roi]
    if column:
        rows = rows[rows[column] >= minimum]
    return neurons.bodyId.isin(rows["bodyId"])


def full_match(values, pattern):
    return values.map(lambda v: isinstance(v, str) and re.fullmatch(pattern, v) is not None).astype(bool)


CASES = [
    "null_and_value",
    "is_null",
    "instance_not_null",
    "regex_classes",
    "regex_list",
    "regex_type_or_instance",
    "regex_and_null",
    "regex_and_roi",
    "regex_no_match",
    "roi_no_match",
    "rois_all",
    "every_primary_any",
    "inputs_any_min",
    "outputs_all_min",
]


def case_criteria(case, client, neurons, rows):
    """(criteria, the oracle's mask over ``neurons``)."""
    types = sorted(neurons["type"].dropna().unique())
    primary = list(client.primary_rois)
    if case == "null_and_value":
        return NC(type=[None, types[2]]), neurons.type.isna() | (neurons.type == types[2])
    if case == "is_null":
        return NC(type=IsNull), neurons.type.isna()
    if case == "instance_not_null":
        return NC(instance=NotNull), neurons.instance.notna()
    if case == "regex_classes":  # character classes, counted repetition, alternation, escapes
        pattern = r"DN[a-z]{1,2}\d{2,3}|LHPV6q1\+?"
        return NC(type=pattern, regex=True), full_match(neurons.type, pattern)
    if case == "regex_list":  # several regexes: any of them
        return NC(type=["DNg.*", "LH.*"]), full_match(neurons.type, "(DNg.*)|(LH.*)")
    if case == "regex_type_or_instance":
        crit = NC(type="DNg.*", instance=".*_L")
        return crit, full_match(neurons.type, "DNg.*") | full_match(neurons.instance, ".*_L")
    if case == "regex_and_null":
        return NC(type=["DN.*", None], regex=True), full_match(neurons.type, "DN.*") | neurons.type.isna()
    if case == "regex_and_roi":
        return NC(type="DN.*", rois=["GNG"]), full_match(neurons.type, "DN.*") & having(rows, neurons, "GNG")
    if case == "regex_no_match":
        return NC(type="zz[0-9]+"), neurons.type.isna() & False
    if case == "roi_no_match":  # a type and an ROI none of its neurons touches
        for t in types:
            bodies = neurons.loc[neurons.type == t, "bodyId"]
            untouched = sorted(set(primary) - set(rows.loc[rows.bodyId.isin(bodies), "roi"]))
            if untouched:
                return NC(type=t, rois=[untouched[0]]), neurons.type.isna() & False
        pytest.fail("every type touches every primary ROI")
    if case == "rois_all":
        mask = having(rows, neurons, primary[0]) & having(rows, neurons, primary[1]) & having(rows, neurons, "GNG")
        return NC(rois=[primary[0], primary[1], "GNG"]), mask
    if case == "every_primary_any":  # a big ROI list
        mask = neurons.bodyId.isin(rows.loc[rows.roi.isin(primary), "bodyId"])
        return NC(rois=primary, roi_req="any"), mask
    if case == "inputs_any_min":
        mask = having(rows, neurons, "GNG", "post", 3) | having(rows, neurons, "FB", "post", 3)
        return NC(inputRois=["GNG", "FB"], roi_req="any", min_roi_inputs=3), mask
    if case == "outputs_all_min":
        mask = having(rows, neurons, "GNG", "pre", 2) & having(rows, neurons, "VNC", "pre", 2)
        mask &= having(rows, neurons, "GNG") & having(rows, neurons, "VNC")
        return NC(rois=["GNG", "VNC"], outputRois=["GNG", "VNC"], min_roi_outputs=2), mask
    raise AssertionError(case)


@pytest.fixture
def sql_free(monkeypatch):
    """Counts NeuronCriteria.where calls: the SQL path renders the criteria, the RAM path never does."""
    calls = []
    where = NeuronCriteria.where

    def spy(self, *args, **kwargs):
        calls.append(self)
        return where(self, *args, **kwargs)

    monkeypatch.setattr(NeuronCriteria, "where", spy)
    return calls


@pytest.mark.parametrize("case", CASES)
def test_criteria_in_ram_match_oracle_and_sql(client, oracle, monkeypatch, sql_free, case):
    """The bodies are pandas' on the feathers, found without SQL; the frames equal the SQL path's."""
    _, neurons, rows = oracle
    crit, mask = case_criteria(case, client, neurons, rows)
    want = sorted(neurons.loc[mask.to_numpy(), "bodyId"].tolist())
    if case not in ("regex_no_match", "roi_no_match"):
        assert want, "the oracle selects no neuron: a weak case"
    monkeypatch.setattr(neurons_module, "USE_NEURON_TABLE", True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoMatchWarning)
        got = flatprint.fetch_neurons(crit, omit_rois=True, client=client)
    assert got["bodyId"].tolist() == want
    assert not sql_free  # no SQL rendered for the criteria
    (n1, r1), (n2, r2) = table_and_sql_frames(client, monkeypatch, crit)
    assert n1["bodyId"].tolist() == want
    assert_same_frames(n1, n2)
    assert_same_frames(r1, r2)


def test_neurons_without_roi_rows(client, monkeypatch):
    """A neuron with no neuron_rois row (the synthetic releases have none: one is made by dropping a
    neuron's rows from the table in RAM): an empty roiInfo and ROI lists, and in roi_counts_df only its
    NotPrimary row (its totals, all outside primary ROIs); the other neurons as the SQL path gives them."""
    from flatprint.store.neurontable import neuron_table

    crit = NC(type="DN.*")
    (n2, r2) = table_and_sql_frames(client, monkeypatch, crit)[1]
    table = neuron_table(client.store)
    position = int(table.positions([n2["bodyId"].iloc[1]])[0])
    body = int(table.body_ids[position])
    a, b = int(table.roi_offsets[position]), int(table.roi_offsets[position + 1])
    assert b > a
    keep = np.r_[0:a, b : len(table.roi_code)]
    offsets = table.roi_offsets.copy()
    offsets[position + 1 :] -= b - a
    bare = dataclasses.replace(
        table,
        roi_offsets=offsets,
        roi_code=table.roi_code[keep],
        roi_counts={c: v[keep] for c, v in table.roi_counts.items()},
    )
    monkeypatch.setattr(neurons_module, "neuron_table", lambda store: bare)
    monkeypatch.setattr(neurons_module, "USE_NEURON_TABLE", True)
    n1, r1 = flatprint.fetch_neurons(crit, client=client)
    row = n1.set_index("bodyId").loc[body]
    assert row["roiInfo"] == {} and row["inputRois"] == [] and row["outputRois"] == []
    others = n1["bodyId"] != body
    assert_same_frames(n1[others].reset_index(drop=True), n2[n2["bodyId"] != body].reset_index(drop=True))
    counts = [c for c in r2.columns if c not in ("bodyId", "roi")]
    mine = r1[r1["bodyId"] == body]
    totals = n2.set_index("bodyId").loc[body, counts]
    assert mine["roi"].tolist() == ["NotPrimary"] and mine[counts].iloc[0].tolist() == totals.tolist()
    assert_same_frames(r1[r1["bodyId"] != body].reset_index(drop=True), r2[r2["bodyId"] != body].reset_index(drop=True))


def test_segment_criteria_keep_the_sql_path(client, oracle, sql_free):
    """label='Segment' selects non-neurons too: SQL answers, with the oracle's bodies."""
    segments, _, _ = oracle
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoMatchWarning)
        got = flatprint.fetch_neurons(NC(type="DN.*", label="Segment"), omit_rois=True, client=client)
    want = segments[full_match(segments.type, "DN.*").to_numpy()]
    assert got["bodyId"].tolist() == sorted(want["bodyId"].tolist())
    assert len(sql_free) >= 1


@pytest.mark.parametrize(
    "crit, message",
    [
        (lambda: NC(type="DN[", regex=True), "invalid regular expression"),
        (lambda: NC(type=[NotNull, "x"]), "NotNull cannot be combined"),
        (lambda: NC(rois=["GNGG"]), "unknown ROI 'GNGG'"),
        (lambda: NC(type="DN.*", inputRois=["nope"]), "inputRois: unknown ROI"),
    ],
)
def test_bad_criteria_name_the_problem(client, crit, message):
    """Values the RAM path can't take fall back to SQL, which names the argument (as before)."""
    with pytest.raises(QueryError, match=re.escape(message)):
        flatprint.fetch_neurons(crit(), client=client)


def test_regex_is_matched_once_per_distinct_value(client, monkeypatch):
    """A regex costs one DuckDB filter over the distinct values, whatever the number of neurons."""
    from flatprint.store.neurontable import ValueIndex, neuron_table

    seen = []
    lookup = ValueIndex.regex_lookup

    def spy(self, cursor, pattern):
        seen.append((len(self.values), pattern))
        return lookup(self, cursor, pattern)

    monkeypatch.setattr(ValueIndex, "regex_lookup", spy)
    monkeypatch.setattr(neurons_module, "USE_NEURON_TABLE", True)
    flatprint.fetch_neurons(NC(type=["DNg.*", "LH.*"]), omit_rois=True, client=client)
    table = neuron_table(client.store)
    distinct = pd.Series(table.columns.column("type").to_pylist()).dropna().nunique()
    assert seen == [(distinct, "(DNg.*)|(LH.*)")]


def test_count_totals_treat_null_and_nan_as_zero():
    """Totals of count columns as int64, NULL (and NaN) as 0, as pandas' fillna(0) gives them."""
    import pyarrow as pa

    ints = pa.chunked_array([pa.array([3, None, 5], pa.int64())])
    floats = pa.chunked_array([pa.array([2.0, None, float("nan")], pa.float64())])
    text = pa.chunked_array([pa.array(["1", None, "4"])])
    assert neurons_module.count_totals(ints, pd.Series([3.0, None, 5.0])).tolist() == [3, 0, 5]
    assert neurons_module.count_totals(floats, pd.Series([2.0, None, None])).tolist() == [2, 0, 0]
    # other types: from the converted column
    assert neurons_module.count_totals(text, pd.Series([1, None, 4])).tolist() == [1, 0, 4]
    assert neurons_module.count_totals(ints, pd.Series([0.0])).dtype == np.int64


REGEXES = [r"DN.*", r"(?i)dng.*", r"DN[a-z]{1,2}\d+", r"LH.*|.*_L", r"[^D].*", r"DNg0\d", r"(DN)?g.*", r".*"]


def test_regex_over_arrow_equals_duckdb(client):
    """Over values without newlines the Arrow RE2 path gives DuckDB's regexp_full_match answer."""
    from flatprint.store.neurontable import neuron_table

    for name in ("type", "instance"):
        index = neuron_table(client.store).indexes[name]
        assert not index.line_breaks
        duckdb_only = dataclasses.replace(index, line_breaks=True)
        for pattern in REGEXES:
            got = index.regex_lookup(client.cursor(), pattern)
            assert np.array_equal(got, duckdb_only.regex_lookup(client.cursor(), pattern)), (name, pattern)
        assert len(index.regex_lookup(client.cursor(), "DN.*")) > 0


def test_values_with_newlines_take_duckdb(client):
    """A value holding a newline sends regexes to DuckDB (RE2's newline options would matter); the
    positions are those SQL's regexp_full_match selects row by row."""
    import pyarrow as pa

    from flatprint.store.neurontable import _value_index

    rows = ["a\nb", "ab", None, "a\nb", "x\n", "ab"]
    index = _value_index(pa.chunked_array([pa.array(rows)]))
    assert index.line_breaks
    plain = _value_index(pa.chunked_array([pa.array(["ab", None, "cd"])]))
    assert not plain.line_breaks
    cur = client.cursor()
    for pattern in ("a.b", "ab", "x.?", ".*", "a\nb", "(?s)a.b"):
        want = [
            i
            for i, v in enumerate(rows)
            if v is not None and cur.execute("SELECT regexp_full_match(?, ?)", [v, pattern]).fetchall()[0][0]
        ]
        assert index.regex_lookup(cur, pattern).tolist() == want, pattern


def test_pattern_re2_rejects_fails_as_in_sql(client, monkeypatch):
    """A pattern Python compiles but RE2 rejects (a lookahead) fails with DuckDB's error on both paths."""
    errors = []
    for use_table in (True, False):
        monkeypatch.setattr(neurons_module, "USE_NEURON_TABLE", use_table)
        with pytest.raises(Exception) as caught:
            flatprint.fetch_neurons(NC(type="DN(?=g).*"), client=client)
        errors.append(type(caught.value))
    assert errors[0] is errors[1] and "duckdb" in errors[0].__module__


def test_roi_lists_are_each_calls_own(client):
    """inputRois/outputRois come from lists the neuron table keeps as tuples: changing one call's list
    leaves the next call's alone."""
    first, _ = flatprint.fetch_neurons(NC(rois=["GNG"]), roi_info=False, client=client)
    second, _ = flatprint.fetch_neurons(NC(rois=["GNG"]), roi_info=False, client=client)
    for column in ("inputRois", "outputRois"):
        cell = first[column].iloc[0]
        assert type(cell) is list and cell == second[column].iloc[0] and cell is not second[column].iloc[0]
        cell.append("changed")
        again, _ = flatprint.fetch_neurons(NC(rois=["GNG"]), roi_info=False, client=client)
        assert again[column].iloc[0] == second[column].iloc[0], column
