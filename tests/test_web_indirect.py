"""The explorer's Indirect page: rendered by the server, then drawn in Debian's headless Chromium with
the library's numbers (fails, never skips, without Chromium)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from web_helpers import build_app, chromium_browser, require_chromium, screenshot, serving

from flatprint import Client, fetch_indirect

SCALE, SEED = 0.01, 1  # the oracle store of test_indirect.py


@pytest.fixture(scope="module")
def store(store_factory):
    return store_factory(SEED, SCALE)


@pytest.fixture(scope="module")
def lib(store):
    c = Client(store)
    yield c
    c.close()


@pytest.fixture(scope="module")
def source_type(lib) -> str:
    """The type that sends the most synapses to other neurons (so that every hop reaches someone)."""
    return lib.sql("""SELECT n.type FROM connections c JOIN segments n ON n.bodyId = c.body_pre AND n.is_neuron
                      JOIN segments m ON m.bodyId = c.body_post AND m.is_neuron
                      WHERE n.type IS NOT NULL GROUP BY 1 ORDER BY sum(c.weight) DESC, 1 LIMIT 1""")[1][0][0]


def test_page_tables_and_downloads(store, lib, source_type):
    from fastapi.testclient import TestClient

    with TestClient(build_app([store])) as http:
        r = http.get("/explorer/indirect", params={"sources": source_type, "hops": "3"})
        assert r.status_code == 200
        assert 'href="/explorer/indirect?dataset=' in r.text  # the menu entry
        assert "indirect-hop-3" in r.text and "indirect-hop-4" not in r.text
        r = http.get(
            "/explorer/indirect", params={"sources": source_type, "hops": "3", "download": "summed", "format": "csv"}
        )
        assert r.status_code == 200
        import io

        got = pd.read_csv(io.StringIO(r.text))
        _, want = fetch_indirect(source_type, None, hops=3, groupby="type", client=lib)
        assert got["type_post"].tolist() == want["type_post"].tolist()
        assert got["weight"].to_numpy() == pytest.approx(want["weight"].to_numpy(), rel=1e-12)
        r = http.get("/explorer/indirect", params={"sources": source_type, "hops": "9"})
        assert r.status_code == 400 and "hops must be &lt;= 6" in r.text


def test_browser_heatmaps_and_ranking(store, lib, source_type):
    require_chromium()
    per_hop, summed = fetch_indirect(source_type, None, hops=3, groupby="type", client=lib)
    with serving(build_app([store])) as url, chromium_browser() as context:
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/explorer/indirect?sources={source_type}&hops=3")
        for hop in (1, 2, 3):
            page.wait_for_selector(f"#indirect-hop-{hop}[data-drawn='1']", timeout=30000)
        screenshot(page, "indirect")
        # the ranked table shows the library's top rows, heaviest first
        cells = page.locator("#table-summed tbody tr").first.locator("td").all_inner_texts()
        top = summed.iloc[0]
        assert cells[0] == top["type_pre"] and cells[1] == top["type_post"]
        assert float(cells[2]) == pytest.approx(top["weight"], rel=1e-5)
        assert page.locator("#table-per_hop tbody tr").count() > 0
        # every hop's heatmap holds log10 |weight| of the library's values, in the drawn figure
        for hop in (1, 2, 3):
            trace = page.evaluate(
                f"(() => {{ const d = document.getElementById('indirect-hop-{hop}').data[0]; "
                "return {x: d.x, y: d.y, z: d.z, ticks: d.colorbar.ticktext}; })()"
            )
            want = per_hop[per_hop["hop"] == hop].set_index(["type_pre", "type_post"])["weight"]
            drawn = 0
            for i, pre in enumerate(trace["y"]):
                for j, post in enumerate(trace["x"]):
                    value = trace["z"][i][j]
                    if (pre, post) in want.index:
                        assert value == pytest.approx(math.log10(abs(want[(pre, post)])), abs=1e-9)
                        drawn += 1
                    else:
                        assert value is None
            assert drawn > 0
            assert all(float(t) > 0 for t in trace["ticks"])  # colour bar in weights, not in logs
        assert not errors, errors
