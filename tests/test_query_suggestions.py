"""Misspelled criteria: an empty result warns (NoMatchWarning) with the closest stored values, an
unknown ROI raises with suggestions; the suggestions are checked against pandas on the raw feathers."""

from __future__ import annotations

import json
import re
import warnings

import pytest
from oracle import oracle_segments

import flatprint
from flatprint import NeuronCriteria as NC, NoMatchWarning
from flatprint.errors import QueryError


@pytest.fixture(scope="module")
def neurons(release_dir):
    """Annotations of the :Neuron bodies, by pandas (the suggestions must come from these values)."""
    segs = oracle_segments(release_dir)
    return segs[segs["is_neuron"]]


def values(neurons, *columns) -> set[str]:
    return {v for c in columns for v in neurons[c].dropna().astype(str)}


def suggestions(message: str) -> list[str]:
    """The quoted names after 'did you mean' in a message."""
    assert "did you mean" in message, message
    tail = message.split("did you mean", 1)[1]
    return [single or double for single, double in re.findall(r"'([^']*)'|\"([^\"]*)\"", tail)]


def no_match_warnings(call) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, [str(w.message) for w in caught if issubclass(w.category, NoMatchWarning)]


def test_warning_class_is_exported():
    assert issubclass(flatprint.NoMatchWarning, UserWarning)
    assert "NoMatchWarning" in flatprint.__all__


def test_lowercase_name_suggests_the_stored_spelling(client, neurons):
    (df, counts), messages = no_match_warnings(lambda: flatprint.fetch_neurons("dnge104", client=client))
    assert df.empty and counts.empty
    assert len(messages) == 1, messages
    assert "type/instance" in messages[0] and "'dnge104'" in messages[0]
    got = suggestions(messages[0])
    stored = values(neurons, "type", "instance")
    # equal ignoring case comes first, then the others; every suggestion is a stored value
    same_but_case = sorted(v for v in stored if v.lower() == "dnge104")
    assert same_but_case == ["DNge104"]
    assert got[0] == "DNge104"
    assert set(got) <= stored and 1 <= len(got) <= 5


def test_truncated_type_suggests_the_full_one(client, neurons):
    _, messages = no_match_warnings(lambda: flatprint.fetch_neurons(NC(type="DNge10"), client=client))
    assert len(messages) == 1 and messages[0].startswith("type: value 'DNge10'")
    got = suggestions(messages[0])
    assert "DNge104" in got
    assert set(got) <= values(neurons, "type")  # only types (instance was not asked for)


def test_status_case_and_regex(client, neurons):
    _, messages = no_match_warnings(lambda: flatprint.fetch_neurons(NC(status="traced"), client=client))
    assert [suggestions(m) for m in messages] == [["Traced"]]
    assert "Traced" in values(neurons, "status")

    # a regex that matches nothing suggests what it matches ignoring case (oracle: Python re over pandas values)
    _, messages = no_match_warnings(lambda: flatprint.fetch_neurons(NC(type="dnge10.*"), client=client))
    assert len(messages) == 1 and "regex 'dnge10.*'" in messages[0]
    want = sorted(v for v in values(neurons, "type") if re.fullmatch("dnge10.*", v, re.IGNORECASE))
    assert want and suggestions(messages[0]) == want[:5]


def test_value_only_on_non_neurons_says_so(client, release_dir):
    segs = oracle_segments(release_dir)
    non_neuron_only = set(segs.loc[~segs["is_neuron"], "status"].dropna()) - set(
        segs.loc[segs["is_neuron"], "status"].dropna()
    )
    status = sorted(non_neuron_only)[0]
    (df, _), messages = no_match_warnings(lambda: flatprint.fetch_neurons(NC(status=status), client=client))
    assert df.empty and len(messages) == 1 and "label='Segment'" in messages[0]
    # ... and with the label that includes them the rows are there, without a warning
    (df, _), messages = no_match_warnings(
        lambda: flatprint.fetch_neurons(NC(status=status, label="Segment"), client=client)
    )
    assert len(df) == (segs["status"] == status).sum() and not messages


def test_legitimately_empty_results_do_not_warn(client, neurons):
    (df, _), messages = no_match_warnings(lambda: flatprint.fetch_neurons("DNge104", client=client))
    assert len(df) == 2 and not messages
    # every value exists, only the combination is empty: no misspelling to report
    other_status = sorted(set(neurons["status"].dropna()) - set(neurons.loc[neurons["type"] == "DNge104", "status"]))[0]
    (df, _), messages = no_match_warnings(
        lambda: flatprint.fetch_neurons(NC(type="DNge104", status=other_status), client=client)
    )
    assert df.empty and not messages
    (df, _), messages = no_match_warnings(
        lambda: flatprint.fetch_neurons(NC(type="DNge104", min_pre=10**9), client=client)
    )
    assert df.empty and not messages


def test_unknown_roi_raises_with_suggestions(client, release_dir):
    tree = json.loads((release_dir / "roi-hierarchy.json").read_text())["roiHierarchy"]
    names, stack = set(), [tree]
    while stack:
        node = stack.pop()
        names.add(node["name"])
        stack += node.get("children", [])
    assert "GNG" in names and "a'L(R)" in names
    with pytest.raises(QueryError, match=r"rois: unknown ROI 'gng'") as caught:
        flatprint.fetch_neurons(NC(rois=["gng"]), client=client)
    assert suggestions(str(caught.value))[0] == "GNG"
    with pytest.raises(QueryError, match=r"inputRois: unknown ROI") as caught:
        flatprint.fetch_neurons(NC(inputRois=["a'L(r)"]), client=client)
    got = suggestions(str(caught.value))
    assert got[0] == "a'L(R)" and set(got) <= names


def test_connectivity_error_carries_the_suggestion(client):
    with pytest.raises(QueryError) as caught:
        flatprint.fetch_adjacencies("dnge104", client=client)
    message = str(caught.value)
    assert message.startswith("sources: no neurons match")
    assert suggestions(message.splitlines()[1])[0] == "DNge104"
    with pytest.raises(QueryError, match="targets: no neurons match") as caught:
        flatprint.fetch_simple_connections("DNge104", NC(type="DNge10"), client=client)
    assert "DNge104" in suggestions(str(caught.value).splitlines()[1])


def test_synapse_queries_warn_when_empty(client):
    df, messages = no_match_warnings(lambda: flatprint.fetch_synapses(NC(type="dnge104"), client=client))
    assert df.empty and len(messages) == 1 and suggestions(messages[0])[0] == "DNge104"
