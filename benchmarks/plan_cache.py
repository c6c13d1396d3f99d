"""Plan cache benchmark: parse + analyze time per query with and without the cache (captured
neuprint-python corpus), and fetch_neurons-style Cypher latency through ``execute`` on a store.

    python benchmarks/plan_cache.py STORE.duckdb [--reference ../shared/reference] [--repeat 50]

Parse + analyze: for every captured query, the median of ``--repeat`` runs of ``parse`` +
``analyze`` against the median of as many cache hits (the cache primed with the same query with
other literals, so each timed run binds this text's literals into the template), and of a text
seen before (the exact-text level). Latency: one
fetch_neurons text of the corpus, run for ``--repeat`` different body ids drawn from the store,
with the cache off and on (the cached runs all hit: one shape). Long lists: the same text with
``--long-list`` body ids (±10%, a new list each run: fetch_adjacencies sends such lookups), the
CPU time per request of parse + analyze against the cache (one shape for every length) and of a
whole ``execute`` with the cache off and on.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from pathlib import Path

from flatprint.cypher.analyzer import analyze
from flatprint.cypher.engine import execute
from flatprint.cypher.parser import parse
from flatprint.cypher.plancache import PlanCache
from flatprint.cypher.tokens import tokenize
from flatprint.errors import QueryError
from flatprint.store import Store

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))  # cypher_literals, shared with the plan cache test
from cypher_literals import other_literals  # noqa: E402

FETCH_NEURONS = "fetch_neurons__bodyId_list5__01.cypher"


def median_us(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def parse_and_analyze(text: str) -> None:
    analyze(parse(text))


def front_end(corpus: Path, repeat: int) -> None:
    uncached, shape_hit, text_hit, tokenize_only, hits = [], [], [], [], 0
    files = sorted(corpus.glob("*.cypher"))
    for path in files:
        text = path.read_text()
        try:
            parse_and_analyze(text)
        except QueryError:
            continue  # the capture's write transaction
        cache = PlanCache()
        try:
            cache.prepare(other_literals(text))
        except QueryError:
            pass
        before = cache.hits
        cache.prepare(text)
        hits += cache.hits > before
        uncached.append(median_us(lambda: parse_and_analyze(text), repeat))
        text_hit.append(median_us(lambda: cache.prepare(text), repeat))

        def shape_only():
            cache._texts.clear()  # forget the exact text: time the shape lookup and the binding
            cache.prepare(text)

        shape_hit.append(median_us(shape_only, repeat))
        tokenize_only.append(median_us(lambda: tokenize(text), repeat))
    print(
        f"{len(uncached)} queries of {corpus.name}; {hits} hit the cache after a query of the same shape "
        f"with other literals"
    )
    print(
        f"parse + analyze, median over queries of each query's median: {statistics.median(uncached):.0f} us "
        f"without the cache; with it {statistics.median(shape_hit):.0f} us for a text of a known shape "
        f"(tokenizing alone {statistics.median(tokenize_only):.0f} us), "
        f"{statistics.median(text_hit):.1f} us for a text seen before"
    )


def latency(store_path: Path, corpus: Path, repeat: int) -> None:
    template = (corpus / FETCH_NEURONS).read_text()
    store = Store.open(store_path)
    ids = [
        row[0]
        for row in store.cursor()
        .execute(f"SELECT bodyId FROM segments WHERE is_neuron ORDER BY hash(bodyId) LIMIT {5 * repeat}")
        .fetchall()
    ]
    texts = [re.sub(r"\[1, 2, 3, 4, 5\]", str(ids[5 * i : 5 * i + 5]), template) for i in range(repeat)]
    assert all(text != template for text in texts), "the fetch_neurons capture changed: no body list to fill"
    execute(store, texts[0], plan_cache=False)  # warm DuckDB
    cache = PlanCache()
    for label, option in (("off", False), ("on", cache)):
        times = []
        for text in texts:
            start = time.perf_counter()
            execute(store, text, plan_cache=option)
            times.append(time.perf_counter() - start)
        print(
            f"fetch_neurons (5 body ids, {len(texts)} runs) cache {label}: median "
            f"{statistics.median(times) * 1e3:.2f} ms"
        )
    print(f"cache: {cache.hits} hits, {cache.misses} misses")
    store.close()


def median_cpu_ms(function, items) -> float:
    times = []
    for item in items:
        start = time.process_time()
        function(item)
        times.append(time.process_time() - start)
    return statistics.median(times) * 1e3


def long_lists(store_path: Path, corpus: Path, repeat: int, count: int) -> None:
    template = (corpus / FETCH_NEURONS).read_text()
    store = Store.open(store_path)
    ids = [row[0] for row in store.cursor().execute("SELECT bodyId FROM segments WHERE is_neuron").fetchall()]
    rng = random.Random(0)

    def text_with(size: int) -> str:
        chosen = rng.sample(ids, min(size, len(ids)))
        return template.replace("[1, 2, 3, 4, 5]", str(chosen))

    texts = [text_with(count + rng.randint(-count // 10, count // 10)) for _ in range(repeat)]
    cache = PlanCache()
    cache.prepare(text_with(count // 2))  # the one miss: every other length hits its entry
    print(f"long lists: {len(texts)} texts of ~{count} body ids, ~{len(texts[0]):,} characters each")
    print(
        f"  per request CPU: parse + analyze {median_cpu_ms(parse_and_analyze, texts):.2f} ms; "
        f"tokenize alone {median_cpu_ms(tokenize, texts):.2f} ms; "
        f"with the cache {median_cpu_ms(cache.prepare, texts):.2f} ms "
        f"({cache.hits} hits, {cache.misses} miss, {len(cache)} entry)"
    )
    for label, option in (("off", False), ("on", cache)):
        cpu = median_cpu_ms(lambda text: execute(store, text, plan_cache=option), texts)
        print(f"  execute, cache {label}: median {cpu:.2f} ms CPU per request")
    store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--reference", type=Path, default=REPO_ROOT.parent / "shared" / "reference")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--long-list", type=int, default=1400, help="body ids in the long-list texts (0: skip)")
    args = parser.parse_args(argv)
    corpus = args.reference / "neuprint-queries"
    if not corpus.is_dir():
        print(f"error: no captured corpus at {corpus} (give --reference)", file=sys.stderr)
        return 2
    front_end(corpus, args.repeat)
    latency(args.store, corpus, args.repeat)
    if args.long_list > 0:
        long_lists(args.store, corpus, args.repeat, args.long_list)
    return 0


if __name__ == "__main__":
    sys.exit(main())
