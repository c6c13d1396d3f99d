"""What an unmodified neuprint-python client really gets when a query runs past the server's time
limit (docs/server.md, "Errors and timeouts")."""

from __future__ import annotations

import pytest
import requests

neuprint = pytest.importorskip("neuprint")

from neuprint.client import NeuprintTimeoutError  # noqa: E402
from server_fixture import running_server  # noqa: E402

# A cross product of all segments three times: many seconds even on the tiny test store.
SLOW = "MATCH (a:Segment), (b:Segment), (c:Segment) RETURN count(*) AS n"
LIMIT = 1.5


@pytest.fixture(scope="module")
def client(store_path, tmp_path_factory):
    home = tmp_path_factory.mktemp("timeout-home")
    with running_server([str(store_path)], home, "--timeout", str(LIMIT)) as (url, cert):
        neuprint.Client.DATASETS_CACHE.clear() if hasattr(neuprint.Client, "DATASETS_CACHE") else None
        yield neuprint.Client(url, dataset="male-cns:v0.9", token="local", verify=str(cert))


def test_timeout_reaches_neuprint_python_as_http_400_with_guidance(client):
    with pytest.raises(requests.HTTPError) as caught:
        client.fetch_custom(SLOW)
    error = caught.value
    # The recipe docs/server.md gives for catching a timeout with any neuprint-python version.
    assert error.response is not None and error.response.status_code == 400
    message = error.response.json()["error"]
    assert "timeout" in message.lower()
    assert f"{LIMIT:g} s" in message
    # ... and the guidance: what the user can do about it.
    assert "flatprint serve --timeout" in message and "Narrow the query" in message
    # neuprint-python copies the server's message and the Cypher into the exception text.
    assert message in str(error) and "MATCH (a:Segment)" in str(error)


def test_neuprint_python_does_not_raise_its_timeout_class(client):
    """neuprint-python 0.6.4 checks ``if ex.response and 'timeout' in ...``, and a requests Response
    is falsy for every status >= 400, so NeuprintTimeoutError never fires for an HTTP error (against
    neuPrintHTTP either). docs/server.md says so; if a newer client fixes the check, this fails as a
    reminder to update those docs."""
    with pytest.raises(requests.HTTPError) as caught:
        client.fetch_custom(SLOW)
    assert not isinstance(caught.value, NeuprintTimeoutError), (
        "neuprint-python now raises NeuprintTimeoutError: update docs/server.md, docs/security.md, docs/cypher.md"
    )


def test_runtimeboxed_answers_no_rows_instead_of_an_error(client):
    """fetch_adjacencies' size probe (apoc.cypher.runTimeboxed) sees 0 rows on a time-out, as with Neo4j,
    which is the path neuprint-python actually takes (its NeuprintTimeoutError branch is dead)."""
    inner = SLOW.replace('"', '\\"')
    got = client.fetch_custom(f'CALL apoc.cypher.runTimeboxed("{inner}", {{}}, 300) YIELD value RETURN value.n AS n')
    assert got.empty and got.columns.tolist() == ["n"]
