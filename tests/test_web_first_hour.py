"""A newcomer's first hour with the explorer and the server's pages (issue 18): nothing loaded from
another host (/api/docs included), token grants enforced on every explorer page and download,
"did you mean" links on an empty search, log-scaled heatmaps, conn_roiInfo as a per-ROI table, one
SYNTHETIC banner, a 3D view that fits its box, an aligned checkbox, status in the group-by menu, and
a path query to a missing body that says so.

Browser tests drive Debian's Chromium (tests/web_helpers.py) and fail without it; screenshots go to
test-artifacts/web/.
"""

from __future__ import annotations

import html
import io
import json
import math
import re
import shutil
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from web_helpers import ARTIFACTS, chromium_browser, require_chromium, screenshot, serving

from flatprint.errors import QueryError
from flatprint.query import NeuronCriteria as NC, connection_matrix, fetch_neurons, fetch_shortest_paths

DS, OTHER_DS = "male-cns:v0.9", "other:v1"
BODY, OTHER = 12781, 556329


def figure(text: str, plot_id: str) -> dict:
    m = re.search(rf'id="{plot_id}-data">(.*?)</script>', text, re.S)
    assert m, f"no figure {plot_id}"
    return json.loads(html.unescape(m.group(1)))


# ------------------------------------------------------------------------------------------ item 3: offline
FOREIGN = re.compile(r"""(?:src|href|action)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//""", re.I)
CSS_URL = re.compile(r"""url\(\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//""", re.I)


def served_pages(http) -> list[str]:
    """Every page the server serves: root, API docs, each explorer page and download, JSON helpers."""
    pages = [
        "/",
        "/api/docs",
        "/api/openapi.json",
        "/api/dbmeta/datasets",
        "/api/dbmeta/version",
        "/explorer/",
        "/explorer/search",
        "/explorer/search?p=type&v=DNge104&m=exact",
        "/explorer/search?p=type&v=dnge104&m=exact",
        f"/explorer/neuron/{BODY}",
        f"/explorer/neuron/{BODY}?partners=type",
        "/explorer/connectivity",
        "/explorer/connectivity?up=DNge104",
        "/explorer/matrix",
        "/explorer/matrix?groupby=type",
        "/explorer/paths",
        f"/explorer/paths?from={BODY}&to={OTHER}",
        "/explorer/cypher",
        f"/explorer/cypher?q=MATCH (n:Neuron) WHERE n.bodyId = {BODY} RETURN n.type",
        "/explorer/api/suggest?q=dnge",
        "/explorer/api/roi-matrix",
        f"/explorer/api/neuron/{BODY}/3d",
        "/explorer/static/explorer.css",
        "/explorer/login",
    ]
    for page in list(pages):  # the routes' own links to other pages of this server
        if page.startswith("/explorer/") and "api" not in page and "static" not in page:
            text = http.get(page).text
            pages += [html.unescape(h) for h in re.findall(r'href="(/explorer/[^"#]*)"', text) if "download=" in h][:4]
    return list(dict.fromkeys(pages))


def test_no_served_page_references_another_host(http):
    pages = served_pages(http)
    assert len(pages) > 25
    for page in pages:
        r = http.get(page)
        assert r.status_code < 500, (page, r.status_code)
        text = r.content.decode("utf-8", errors="replace")
        assert not FOREIGN.search(text), (page, FOREIGN.search(text).group(0))
        assert not CSS_URL.search(text), (page, CSS_URL.search(text).group(0))
    docs = http.get("/api/docs").text
    assert "cdn" not in docs.lower()
    for asset in re.findall(r"""(?:src|href)=["'](/api/docs/static/[^"']+)""", docs):
        assert http.get(asset).status_code == 200, asset
    assert len(re.findall(r"""(?:src|href)=["'](/api/docs/static/[^"']+)""", docs)) >= 2
    assert http.get("/api/docs/static/..%2Fcore.py").status_code == 404


def test_api_docs_render_offline_in_chromium(app, http):
    """Swagger UI draws the operations list with every request to another host refused."""
    require_chromium()
    paths = http.get("/api/openapi.json").json()["paths"]
    with serving(app) as url, chromium_browser() as context:
        page = context.new_page()
        foreign = []

        def only_this_server(route):
            if route.request.url.startswith(url):
                route.continue_()
            else:
                foreign.append(route.request.url)
                route.abort()

        page.route("**/*", only_this_server)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/api/docs")
        page.wait_for_selector(".opblock", timeout=30000)
        shown = set(page.locator(".opblock-summary-path").all_inner_texts())
        shown = {s.replace("\u200b", "").strip() for s in shown}
        assert {p for p in paths if "dbmeta" in p} <= shown
        assert len(shown) >= len(paths) * 0.9
        screenshot(page, "first-hour-api-docs")
        # the explorer's pages do not reach out either
        for path in ("/", "/explorer/", f"/explorer/neuron/{BODY}", "/explorer/matrix?groupby=type"):
            page.goto(f"{url}{path}")
            page.wait_for_load_state("load")
        assert not foreign, foreign
        assert not errors, errors


# ------------------------------------------------------------------------------------------ item 7: did you mean
def did_you_mean(text: str) -> list[tuple[str, dict]]:
    m = re.search(r'data-testid="did-you-mean">(.*?)</p>', text, re.S)
    if not m:
        return []
    links = re.findall(r'<a href="(/explorer/search\?[^"]+)"[^>]*>([^<]+)</a>', m.group(1))
    return [
        (html.unescape(v), {k: vs for k, vs in parse_qs(urlsplit(html.unescape(u)).query).items()}) for u, v in links
    ]


def csv_of(http, url: str) -> pd.DataFrame:
    r = http.get(url + "&download=neurons&format=csv")
    assert r.status_code == 200, r.text[:500]
    return pd.read_csv(io.BytesIO(r.content))


RELEASE_COLUMNS = {
    "predictedNt": "predicted_nt",
    "consensusNt": "consensus_nt",
    "celltypePredictedNt": "celltype_predicted_nt",
}  # body-neurotransmitters' names


def raw_values(release_dir, prop: str) -> set[str]:
    """Distinct values of a body property straight from the release's feathers (pandas)."""
    values = set()
    for path in release_dir.glob("body-*.feather"):
        df = pd.read_feather(path)
        for column in (prop, RELEASE_COLUMNS.get(prop)):
            if column in df.columns:
                values |= set(df[column].dropna().astype(str))
    return values


@pytest.mark.parametrize(
    "typed,prop,want_prop", [("dnge104", "type", "type"), ("DNge10", "type", "type"), ("DNge104", "instance", "type")]
)
def test_empty_search_suggests_close_values(http, release_dir, typed, prop, want_prop):
    url = f"/explorer/search?p={prop}&v={typed}&m=exact"
    text = http.get(url).text
    assert len(csv_of(http, url)) == 0  # nothing matches as typed
    hits = did_you_mean(text)
    want = {
        v
        for v in raw_values(release_dir, want_prop)
        if typed.lower() in v.lower() and (v != typed or want_prop != prop)
    }
    assert "DNge104" in want
    assert ("DNge104", want_prop) in [(v, q["p"][0]) for v, q in hits]
    for value, query in hits:  # every suggestion is a real value, and its link finds neurons
        assert value in raw_values(release_dir, query["p"][0])
        follow = "/explorer/search?" + "&".join(f"{k}={v}" for k, vs in query.items() for v in vs)
        assert len(csv_of(http, follow)) > 0, follow


def test_quick_search_gaba_suggests_the_neurotransmitter(http, lib, release_dir):
    url = "/explorer/search?p=&v=gaba&m=exact"  # the header's box: type or instance 'gaba'
    assert len(csv_of(http, url)) == 0
    hits = {(q["p"][0], v): q for v, q in did_you_mean(http.get(url).text)}
    nt = next(v for v in raw_values(release_dir, "predictedNt") if v.lower() == "gaba")
    assert ("predictedNt", nt) in hits
    got = csv_of(http, "/explorer/search?p=predictedNt&v=" + nt + "&m=exact")
    want = fetch_neurons(NC(predictedNt=nt), omit_rois=True, client=lib)
    assert len(want) > 0 and sorted(got["bodyId"]) == sorted(want["bodyId"])


def test_misspelling_suggests_the_near_value(http, release_dir):
    assert "DNge104" in raw_values(release_dir, "type")
    url = "/explorer/search?p=type&v=DNeg104&m=exact"  # two letters swapped
    assert len(csv_of(http, url)) == 0
    assert ("DNge104", "type") in [(v, q["p"][0]) for v, q in did_you_mean(http.get(url).text)]


def test_no_suggestions_on_results_or_nonsense(http):
    assert not did_you_mean(http.get("/explorer/search?p=type&v=DNge104&m=exact").text)
    text = http.get("/explorer/search?p=type&v=qqqqzzzzxx&m=exact").text
    assert not did_you_mean(text) and "No rows" in text


# ------------------------------------------------------------------------------------------ item 8: polish
def test_heatmaps_use_a_log_colour_scale_labelled_in_weights(http, lib):
    want = connection_matrix("type", min_weight=2, client=lib)
    weights = {(p, q): int(w) for p, q, w in zip(want["pre"], want["post"], want["weight"])}
    for scale_param in ("", "&scale=log"):
        trace = figure(http.get(f"/explorer/matrix?groupby=type&min_weight=2{scale_param}").text, "matrix-heatmap")[
            "data"
        ][0]
        cells = 0
        for y, zrow, wrow in zip(trace["y"], trace["z"], trace["customdata"]):
            for x, z, w in zip(trace["x"], zrow, wrow):
                if w is None:
                    assert z is None and (y, x) not in weights
                    continue
                assert w == weights[(y, x)] and abs(z - math.log10(w)) < 1e-5
                cells += 1
        assert cells > 10
        bar = trace["colorbar"]
        shown = [w for row in trace["customdata"] for w in row if w is not None]
        labels = [int(t.replace(",", "")) for t in bar["ticktext"]]
        assert len(labels) == len(bar["tickvals"]) >= 2
        for value, pos in zip(labels, bar["tickvals"]):  # each tick sits at log10 of the weight it names
            assert abs(pos - math.log10(value)) < 1e-5
        assert labels[0] == min(shown) and labels[-1] == max(shown) and labels == sorted(labels)
        assert any(v in labels for v in (10, 100, 1000))
        assert "customdata" in trace["hovertemplate"]
    linear = figure(http.get("/explorer/matrix?groupby=type&min_weight=2&scale=linear").text, "matrix-heatmap")
    trace = linear["data"][0]
    assert all(
        z is None or z == weights[(y, x)] for y, row in zip(trace["y"], trace["z"]) for x, z in zip(trace["x"], row)
    )
    assert http.get("/explorer/matrix?groupby=type&scale=cubic").status_code == 400
    conn = figure(http.get("/explorer/connectivity?up=DNge104").text, "conn-heatmap")["data"][0]
    assert all(
        z is None or abs(z - math.log10(w)) < 1e-5
        for zrow, wrow in zip(conn["z"], conn["customdata"])
        for z, w in zip(zrow, wrow)
    )


def test_home_says_synthetic_once_and_the_description_once(http, app):
    text = http.get("/explorer/").text
    description = app.state.flatprint.datasets[DS].meta["description"]
    assert description.startswith("SYNTHETIC")
    shown = html.unescape(re.sub(r"<[^>]+>", " ", text))
    assert shown.count(description) == 1
    banner = re.search(r'<div class="synthetic" id="synthetic-banner">(.*?)</div>', text, re.S).group(1)
    assert banner.count("SYNTHETIC") == 1 and html.unescape(banner).strip() == description
    assert text.count("SYNTHETIC") == 1
    for page in ("/explorer/search", f"/explorer/neuron/{BODY}"):  # every page keeps the banner
        assert 'id="synthetic-banner"' in http.get(page).text


def test_conn_roi_info_is_a_per_roi_table_equal_to_the_store(http, store_path):
    text = http.get(f"/explorer/connectivity?up={BODY}").text
    section = text[text.index('id="table-connections"') :]
    section = section[: section.index("</section>")]
    con = duckdb.connect(str(store_path), read_only=True)
    try:
        stored = con.execute(
            "SELECT body_pre, body_post, roi, weight, pre FROM connection_rois WHERE body_pre = ?", [BODY]
        ).df()
    finally:
        con.close()
    rows = re.findall(
        r"<tr><td><a [^>]*>(\d+)</a></td>.*?<a [^>]*>(\d+)</a>.*?"
        r'<details class="roi-info">.*?<table class="roi-info">(.*?)</table>',
        section,
        re.S,
    )
    assert len(rows) > 3
    for pre, post, table in rows:
        header = re.findall(r"<th>([^<]+)</th>", table)
        assert header[:3] == ["ROI", "pre", "post"]
        got = {
            html.unescape(r): (int(a), int(b))
            for r, a, b in re.findall(r"<tr><td>([^<]+)</td><td>(\d+)</td><td>(\d+)</td></tr>", table)
        }
        want = stored[(stored["body_pre"] == int(pre)) & (stored["body_post"] == int(post))]
        assert got == {r: (int(p), int(w)) for r, w, p in zip(want["roi"], want["weight"], want["pre"])}
    assert '<span class="nested"' not in section  # no truncated raw JSON left


def test_path_to_a_missing_body_names_it(http, lib, release_dir):
    stats = next(release_dir.glob("body-stats-*.feather"))
    bodies = set(pd.read_feather(stats, columns=["body"])["body"])
    missing = next(b for b in (1, 2, 3, 999_999_999_999) if b not in bodies)
    for a, b in ((missing, OTHER), (BODY, missing)):
        text = http.get(f"/explorer/paths?from={a}&to={b}").text
        assert f"body {missing} is not in this dataset" in text
        assert "must be Traced" not in text
        with pytest.raises(QueryError, match=f"body {missing} is not in this dataset"):
            fetch_shortest_paths(a, b, client=lib)
    assert len(fetch_shortest_paths(BODY, OTHER, min_weight=3, intermediate_criteria=NC(), client=lib)) > 0


# ------------------------------------------------------------------------------------------ item 11: group-by
def test_matrix_group_by_offers_every_library_choice(http, lib):
    from flatprint.query.heavy import GROUPBY_CHOICES

    text = http.get("/explorer/matrix").text
    menu = re.search(r'<select name="groupby">(.*?)</select>', text, re.S).group(1)
    offered = re.findall(r"<option[^>]*>([^<]+)</option>", menu)
    assert "status" in offered and set(offered) == set(GROUPBY_CHOICES)
    url = "/explorer/matrix?groupby=status"
    got = pd.read_csv(io.BytesIO(http.get(url + "&download=matrix&format=csv").content))
    raw = fetch_neurons(NC(), omit_rois=True, client=lib)  # neurons' status, to check the groups
    want = connection_matrix("status", client=lib)
    assert len(want) > 0 and set(want["pre"]) <= set(raw["status"].dropna())
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_dtype=False)


# ------------------------------------------------------------------------------------------ item 9: grants
@pytest.fixture(scope="module")
def two_datasets(store_path, tmp_path_factory):
    """The store served twice (DS and OTHER_DS) with tokens: one per dataset, and an admin for all."""
    from fastapi.testclient import TestClient

    from flatprint.server import open_stores
    from flatprint.server.app import create_app
    from flatprint.server.auth import load_tokens

    second = tmp_path_factory.mktemp("second") / "store.duckdb"
    shutil.copy(store_path, second)
    tokens = tmp_path_factory.mktemp("auth") / "tokens.json"
    tokens.write_text(
        json.dumps(
            {
                "token-a": {"datasets": [DS]},
                "token-b": {"datasets": [OTHER_DS]},
                "token-admin": {"datasets": ["*"], "role": "admin"},
            }
        )
    )
    app = create_app(open_stores([str(store_path), f"{second}={OTHER_DS}"]), grants=load_tokens(tokens))
    with TestClient(app) as client:
        yield client


def explorer_urls(dataset: str) -> list[str]:
    """Every explorer page and JSON helper of one dataset, and each page's table downloads."""
    pages = [
        "/explorer/",
        "/explorer/search?p=type&v=DNge104&m=exact",
        f"/explorer/neuron/{BODY}",
        "/explorer/connectivity?up=DNge104",
        "/explorer/matrix?groupby=type",
        f"/explorer/paths?from={BODY}&to={OTHER}&intermediate=any",
        "/explorer/cypher?q=MATCH (n) RETURN count(n)",
        "/explorer/search",
        "/explorer/connectivity",
        "/explorer/matrix",
        "/explorer/paths",
        "/explorer/cypher",
    ]
    tables = {
        "/explorer/search?p": ["neurons"],
        "/explorer/neuron/": ["upstream", "downstream", "rois"],
        "/explorer/connectivity?up": ["connections"],
        "/explorer/matrix?groupby": ["matrix"],
        "/explorer/paths?from": ["paths"],
        "/explorer/cypher?q": ["result"],
    }
    urls = []
    for page in pages:
        sep = "&" if "?" in page else "?"
        urls.append(f"{page}{sep}dataset={dataset}")
        for prefix, keys in tables.items():
            if page.startswith(prefix):
                urls += [
                    f"{page}{sep}dataset={dataset}&download={k}&format={f}" for k in keys for f in ("csv", "arrow")
                ]
    urls += [
        f"/explorer/api/suggest?q=dnge&dataset={dataset}",
        f"/explorer/api/roi-matrix?dataset={dataset}",
        f"/explorer/api/neuron/{BODY}/3d?dataset={dataset}",
        f"/explorer/neuron/{BODY}/skeleton.swc?dataset={dataset}",
    ]
    return urls


def test_explorer_enforces_each_tokens_datasets(two_datasets):
    http = two_datasets
    a = {"Authorization": "Bearer token-a"}
    admin = {"Authorization": "Bearer token-admin"}
    checked = 0
    for url in explorer_urls(OTHER_DS):
        r = http.get(url, headers=a)
        assert r.status_code == 403, (url, r.status_code, r.text[:300])
        assert OTHER_DS in r.text and "DNge104" not in r.text
        ok = http.get(url, headers=admin)
        assert ok.status_code in (200, 404), (url, ok.status_code, ok.text[:300])  # 404: a store without the SWC
        if "format=arrow" in url:
            assert pa.ipc.open_stream(ok.content).read_all().num_rows > 0
        checked += 1
    assert checked > 30
    for url in explorer_urls(DS):  # token A reads its own dataset
        r = http.get(url, headers=a)
        assert r.status_code in (200, 404), (url, r.status_code, r.text[:300])


def test_dataset_menu_and_default_follow_the_grant(two_datasets):
    http = two_datasets

    def menu(headers, url="/explorer/"):
        text = http.get(url, headers=headers).text
        return re.findall(
            r'<option value="([^"]+)"', re.search(r'<select name="dataset".*?</select>', text, re.S).group(0)
        )

    assert menu({"Authorization": "Bearer token-a"}) == [DS]
    assert menu({"Authorization": "Bearer token-admin"}) == sorted([DS, OTHER_DS])
    # no ?dataset: the first dataset the token may read, not a 403 for the first one served
    r = http.get("/explorer/search", headers={"Authorization": "Bearer token-b"})
    assert r.status_code == 200 and f'data-dataset="{OTHER_DS}"' in r.text
    assert menu({"Authorization": "Bearer token-b"}, "/explorer/search") == [OTHER_DS]
    # the server's root page lists only what the caller's token grants
    root = http.get("/", headers={"Authorization": "Bearer token-a"}).text
    assert DS in root and OTHER_DS not in root
    anonymous = http.get("/").text
    assert DS not in anonymous and OTHER_DS not in anonymous
    # an unknown dataset's 404 names only the datasets the token may read
    r = http.get("/explorer/search?dataset=nope:v1", headers={"Authorization": "Bearer token-a"})
    assert r.status_code == 404 and "nope:v1" in r.text and DS in r.text and OTHER_DS not in r.text


def test_browser_token_goes_through_the_login_cookie(two_datasets):
    http = two_datasets
    http.cookies.clear()
    r = http.get(f"/explorer/search?dataset={DS}")
    assert r.status_code == 401 and "id='login-form'" in r.text and "text/html" in r.headers["content-type"]
    assert http.get("/explorer/api/suggest?q=dnge").status_code == 401  # JSON helpers: plain 401
    bad = http.post(
        "/explorer/login",
        content="token=nope&next=/explorer/",
        follow_redirects=False,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert bad.status_code == 401 and "unknown token" in bad.text and "set-cookie" not in bad.headers
    good = http.post(
        "/explorer/login",
        content=f"token=token-a&next=/explorer/search%3Fdataset%3D{DS}",
        follow_redirects=False,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert good.status_code == 303 and good.headers["location"] == f"/explorer/search?dataset={DS}"
    cookie = good.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    try:
        assert http.get(f"/explorer/search?dataset={DS}").status_code == 200
        assert http.get(f"/explorer/search?dataset={OTHER_DS}").status_code == 403
        assert http.get(f"/explorer/api/suggest?q=dnge&dataset={OTHER_DS}").status_code == 403
        # the cookie stands in for the header on the explorer's pages only, never on the neuPrint API
        assert http.get("/api/dbmeta/datasets").status_code == 401
        # next= never leaves the server
        away = http.post(
            "/explorer/login",
            content="token=token-a&next=//elsewhere.example/x",
            follow_redirects=False,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert away.headers["location"] == "/explorer/"
        assert http.get("/explorer/logout", follow_redirects=False).status_code == 303
    finally:
        http.cookies.clear()
    assert http.get(f"/explorer/search?dataset={DS}").status_code == 401


# ------------------------------------------------------------------------------------------ item 8: layout
def edge_ink(png: bytes, left_fraction: float, band: int = 6) -> dict[str, int]:
    """Non-background pixels in bands along the top, bottom and right edges of a screenshot (the 3D
    scene's part, right of the legend column)."""
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    h, w, _ = img.shape
    inner = img[2 : h - 2, 2 : w - 2]  # inside the container's 1 px border
    x0 = int(inner.shape[1] * left_fraction)
    ink = np.abs(inner - 255).sum(axis=2) > 60
    return {
        "top": int(ink[:band, x0:].sum()),
        "bottom": int(ink[-band:, x0:].sum()),
        "right": int(ink[:, -band:].sum()),
    }


@pytest.fixture(scope="module")
def browser_site(app):
    require_chromium()
    with serving(app) as url, chromium_browser() as context:
        yield url, context


def test_browser_3d_view_fits_its_box(browser_site):
    url, context = browser_site
    page = context.new_page()
    page.goto(f"{url}/explorer/neuron/{BODY}")
    page.wait_for_selector("#view3d[data-drawn='1']", timeout=60000)
    page.wait_for_timeout(800)  # the camera's fit is a relayout after the first draw
    box = page.evaluate("""() => { const c = document.getElementById('view3d').getBoundingClientRect();
        const p = document.querySelector('#view3d .plot-container').getBoundingClientRect();
        return {c: [c.left, c.top, c.right, c.bottom], p: [p.left, p.top, p.right, p.bottom]}; }""")
    c, p = box["c"], box["p"]
    assert c[0] <= p[0] + 1 and c[1] <= p[1] + 1 and p[2] <= c[2] + 1 and p[3] <= c[3] + 1, box
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png = page.locator("#view3d").screenshot(path=str(ARTIFACTS / "first-hour-3d.png"))
    ink = edge_ink(png, left_fraction=0.2)
    assert ink == {"top": 0, "bottom": 0, "right": 0}, f"the 3D scene touches the view's edges: {ink}"


def test_browser_with_roi_columns_checkbox_is_aligned(browser_site):
    url, context = browser_site
    page = context.new_page()
    page.goto(f"{url}/explorer/search")
    layout = page.evaluate("""() => { const l = document.querySelector('label.check');
        const box = l.querySelector('input[type=checkbox]').getBoundingClientRect();
        const text = [...l.childNodes].find(n => n.nodeType === 3 && n.textContent.trim());
        const r = document.createRange(); r.selectNodeContents(text);
        const t = r.getBoundingClientRect();
        const button = document.getElementById('search-submit').getBoundingClientRect();
        return {box: [box.left, box.top, box.right, box.bottom], text: [t.left, t.top, t.right, t.bottom],
                button: [button.top, button.bottom]}; }""")
    bx, tx = layout["box"], layout["text"]
    middle = (bx[1] + bx[3]) / 2
    assert tx[1] <= middle <= tx[3], f"checkbox and its label are not on one line: {layout}"
    assert tx[0] >= bx[2], layout  # the label's text right of the box
    assert layout["button"][0] <= middle <= layout["button"][1], layout  # in line with the Search button
    page.locator("#search-form").screenshot(path=str(ARTIFACTS / "first-hour-search-form.png"))


def test_explorer_searches_do_not_log_no_match_warnings(store_path):
    """The search page shows its own suggestions; the library's NoMatchWarning for the explorer's own
    calls must not reach the server's log (it did, once per empty search). A fresh interpreter, so
    that pytest's warning capture does not hide what a server would print."""
    script = (
        "import sys, warnings\n"
        "from starlette.datastructures import QueryParams\n"
        "from flatprint.query import Client\n"
        "from flatprint.web import views\n"
        "client = Client(sys.argv[1])\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    result = views._search(client, QueryParams('p=type&v=DNeg104&m=exact'))\n"
        "    from flatprint import fetch_neurons, NeuronCriteria\n"
        "    fetch_neurons(NeuronCriteria(type='DNeg104'), client=client)\n"
        "print(len(result['tables'][0].df), len(result['did_you_mean']) > 0,\n"
        "      sorted({type(w.message).__name__ + ':' + w.filename.rsplit('/', 1)[-1] for w in seen}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(store_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    # the explorer's call is quiet and still offers suggestions; a user's own call still warns
    assert out.stdout.split() == ["0", "True", "['NoMatchWarning:<string>']"], out.stdout
