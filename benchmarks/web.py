"""Page-load times of the web explorer at scale 0.1 (target: p50 < 300 ms per page).

Two measurements per page, both against a real uvicorn server on loopback serving the app with the
explorer registered:

- ``server_ms``: the HTML response, timed by an HTTP client (httpx) from request to last byte;
- ``browser_ms``: the page in Debian's headless Chromium (Playwright), navigation start to the
  ``load`` event (HTML, CSS, JS incl. plotly.min.js from the browser cache; tables are visible);
- ``browser_plots_drawn_ms``: navigation start until every plot on the page is drawn (the
  explorer draws plots right after ``load``; 3D views and the home heatmap fetch their data).

Each page is loaded once (``first_ms``: cold store pages, templates compiled, and the per-store
precomputations ``flatprint.web.warm()`` makes at server start: autocomplete index, whole-connectome
matrices), then ``--repeat`` times with the explorer's result cache cleared before each load, so the
page's own query runs again (``server_ms``, ``browser_ms``), and once more straight after with the
cache warm (``server_cached_ms``). Results: ``benchmarks/results/web.json``.

    python benchmarks/web.py --store /path/to/store-0.1.duckdb   # an existing store

    python benchmarks/web.py [--scale 0.1] [--repeat 15] [--no-browser]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _common import ensure_store, machine_facts, now_iso, write_result  # noqa: E402

BODY, OTHER = 12781, 556329
PAGES = [
    ("home", "/explorer/"),
    ("search form", "/explorer/search"),
    ("search type=DNge104", "/explorer/search?p=type&v=DNge104&m=exact"),
    ("search class regex", "/explorer/search?p=superclass&v=.*_neuron&m=regex"),
    ("neuron page", f"/explorer/neuron/{BODY}"),
    ("neuron 3D data", f"/explorer/api/neuron/{BODY}/3d"),
    ("connectivity DNge104 ->", "/explorer/connectivity?up=DNge104"),
    ("matrix type x type", "/explorer/matrix?groupby=type"),
    ("matrix roi x roi", "/explorer/matrix?groupby=roi"),
    ("shortest paths (Traced)", f"/explorer/paths?from={BODY}&to={OTHER}"),
    ("shortest paths (any)", f"/explorer/paths?from={BODY}&to={OTHER}&intermediate=any"),
    ("cypher console", "/explorer/cypher?q=MATCH (n:Neuron) WHERE n.type = 'DNge104' RETURN n.bodyId, n.instance"),
    ("autocomplete", "/explorer/api/suggest?q=dn"),
]


def pct(values, p):
    values = sorted(values)
    if not values:
        return None
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def stats(times) -> dict:
    return {"p50": round(statistics.median(times), 1), "p95": round(pct(times, 95), 1), "n": len(times)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--no-browser", action="store_true", help="server timings only")
    parser.add_argument("--store", help="use this store instead of the benchmark release's")
    parser.add_argument("--results-dir")
    args = parser.parse_args(argv)

    import httpx
    from web_helpers import build_app, chromium_browser, serving

    store = Path(args.store) if args.store else ensure_store(args.scale)
    app = build_app([store])
    results = []
    from flatprint.web.tables import cache

    with serving(app) as base:
        with httpx.Client(base_url=base, timeout=600) as http:
            for name, url in PAGES:
                started = time.perf_counter()
                r = http.get(url)
                first = (time.perf_counter() - started) * 1000
                if r.status_code != 200:
                    raise SystemExit(f"{name}: {url} answered {r.status_code}: {r.text[:500]}")
                uncached, cached = [], []
                for _ in range(args.repeat):
                    cache.clear()  # the explorer's result cache: every query runs again
                    started = time.perf_counter()
                    r = http.get(url)
                    uncached.append((time.perf_counter() - started) * 1000)
                    started = time.perf_counter()
                    http.get(url)
                    cached.append((time.perf_counter() - started) * 1000)
                results.append(
                    {
                        "page": name,
                        "url": url,
                        "bytes": len(r.content),
                        "first_ms": round(first, 1),
                        "server_ms": stats(uncached),
                        "server_cached_ms": stats(cached),
                    }
                )
                print(
                    f"{name:28s} first {first:8.1f} ms   p50 {statistics.median(uncached):7.1f} ms"
                    f"   cached p50 {statistics.median(cached):7.1f} ms",
                    flush=True,
                )
        if not args.no_browser:
            with chromium_browser() as context:
                page = context.new_page()
                page.goto(base + "/explorer/")  # load plotly.min.js once into the browser cache
                page.wait_for_load_state("load")
                for entry in results:
                    if "/api/" in entry["url"]:
                        continue
                    times, ready = [], []
                    for _ in range(args.repeat):
                        cache.clear()
                        page.goto(base + entry["url"], wait_until="load")
                        page.wait_for_selector("body[data-ready='1']", timeout=120000)
                        load, done = page.evaluate(
                            "() => { const e = performance.getEntriesByType('navigation')[0];"
                            " const r = performance.getEntriesByName('flatprint-ready')[0];"
                            " return [e.loadEventEnd - e.startTime, r ? r.startTime : null]; }"
                        )
                        times.append(load)
                        ready.append(done)
                    entry["browser_ms"] = stats(times)
                    entry["browser_plots_drawn_ms"] = stats(ready)
                    print(
                        f"{entry['page']:28s} browser load p50 {statistics.median(times):7.1f} ms"
                        f"   all plots drawn p50 {statistics.median(ready):7.1f} ms",
                        flush=True,
                    )
    html_pages = [r for r in results if "/api/" not in r["url"]]
    summary = {
        "pages": len(html_pages),
        "server_p50_max_ms": max(r["server_ms"]["p50"] for r in html_pages),
        "browser_p50_max_ms": max((r["browser_ms"]["p50"] for r in html_pages if "browser_ms" in r), default=None),
        "target_p50_ms": 300,
    }
    summary["meets_target"] = summary["server_p50_max_ms"] < 300 and (
        summary["browser_p50_max_ms"] is None or summary["browser_p50_max_ms"] < 300
    )
    store_info = next(iter(app.state.flatprint.datasets.values())).info
    synthetic = store_info.get("synthetic") or {}
    doc = {
        "name": "web",
        "date": now_iso(),
        "scale": synthetic.get("scale", args.scale if not args.store else None),
        "store": str(store),
        "client": "httpx (server_ms) and Playwright + Debian chromium (browser_ms)",
        "request": "GET each explorer page; the explorer's result cache cleared before each timed load "
        "(cached loads reported apart); per-store precomputations that flatprint.web.warm() makes "
        "at startup (autocomplete index, whole-connectome matrices, summary) are kept: first_ms "
        "includes them",
        "machine": machine_facts(),
        "summary": summary,
        "results": results,
    }
    path = write_result("web", doc, args.results_dir)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # The server's worker threads still hold DuckDB cursors; leave without tearing them down one by one.
    import os

    os._exit(code)
