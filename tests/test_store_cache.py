"""flatprint.store.cache.BuildOnceCache: one build per key under concurrent first calls, bounded by
entries and bytes (least recently used out first), cleared on demand."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest

from flatprint.store.cache import BuildOnceCache, store_key


class Counted:
    """A build function that counts its calls and can be held until released."""

    def __init__(self, value_bytes: int = 0, hold: threading.Event | None = None):
        self.calls = 0
        self.value_bytes = value_bytes
        self.hold = hold
        self.lock = threading.Lock()

    def __call__(self):
        with self.lock:
            self.calls += 1
        if self.hold is not None:
            assert self.hold.wait(10), "the test never released the build"
        return SimpleNamespace(nbytes=self.value_bytes, serial=object())


def test_concurrent_first_calls_build_once():
    cache = BuildOnceCache(max_entries=4)
    release = threading.Event()
    build = Counted(hold=release)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(cache.get, "a", build) for _ in range(8)]
        # every thread is in get() (one building, the others waiting for that build) before release
        while build.calls == 0:
            threading.Event().wait(0.01)
        threading.Event().wait(0.2)
        release.set()
        values = [f.result(10) for f in futures]
    assert build.calls == 1
    assert all(v is values[0] for v in values)
    assert cache.get("a", build) is values[0] and build.calls == 1


def test_one_key_building_does_not_hold_up_another():
    cache = BuildOnceCache(max_entries=4)
    release = threading.Event()
    slow = Counted(hold=release)
    with ThreadPoolExecutor(2) as pool:
        pending = pool.submit(cache.get, "slow", slow)
        while slow.calls == 0:
            threading.Event().wait(0.01)
        fast = Counted()
        quick = pool.submit(cache.get, "fast", fast).result(5)  # returns while "slow" is still building
        assert fast.calls == 1 and quick is cache.peek("fast")
        assert not pending.done()
        release.set()
        assert pending.result(10) is cache.peek("slow")


def test_entry_bound_evicts_the_least_recently_used():
    cache = BuildOnceCache(max_entries=2)
    builds = {k: Counted() for k in "abc"}
    a = cache.get("a", builds["a"])
    b = cache.get("b", builds["b"])
    assert cache.get("a", builds["a"]) is a  # a is now the most recently used
    cache.get("c", builds["c"])  # evicts b, the oldest
    assert "b" not in cache and cache.peek("a") is a and len(cache) == 2
    assert cache.get("b", builds["b"]) is not b and builds["b"].calls == 2
    assert "a" not in cache  # b's rebuild pushed out a (c was used after a)
    assert builds["a"].calls == 1 and builds["c"].calls == 1


def test_bounds_are_read_at_each_insertion():
    limit = {"entries": 3}
    cache = BuildOnceCache(max_entries=lambda: limit["entries"])
    for key in "abc":
        cache.get(key, Counted())
    assert len(cache) == 3
    limit["entries"] = 1
    cache.get("d", Counted())
    assert len(cache) == 1 and "d" in cache


def test_byte_bound_evicts_the_oldest_but_keeps_the_newest():
    cache = BuildOnceCache(max_entries=10, max_bytes=100)
    cache.get("a", Counted(40))
    cache.get("b", Counted(40))
    assert len(cache) == 2
    cache.get("c", Counted(40))  # 120 bytes: a goes
    assert "a" not in cache and "b" in cache and "c" in cache and cache.nbytes == 80
    cache.get("big", Counted(500))  # larger than the bound alone: everything else goes, it stays
    assert len(cache) == 1 and "big" in cache
    arrays = BuildOnceCache(max_entries=10, max_bytes=3 * 8 * 1000)
    for key in range(5):
        arrays.get(key, lambda: np.zeros(1000))  # numpy arrays report their nbytes
    assert len(arrays) == 3 and all(k in arrays for k in (2, 3, 4))


def test_clear_empties_and_peek_builds_nothing():
    cache = BuildOnceCache(max_entries=2)
    build = Counted()
    assert cache.peek("a") is None and build.calls == 0
    first = cache.get("a", build)
    assert cache.peek("a") is first
    cache.clear()
    assert len(cache) == 0 and cache.peek("a") is None
    assert cache.get("a", build) is not first and build.calls == 2


def test_a_failed_build_keeps_nothing_and_may_be_retried():
    cache = BuildOnceCache(max_entries=2)

    def broken():
        raise RuntimeError("no such table")

    with pytest.raises(RuntimeError, match="no such table"):
        cache.get("a", broken)
    assert "a" not in cache and not cache._building
    assert cache.get("a", Counted()).nbytes == 0


def test_store_key_is_path_and_uuid():
    first = SimpleNamespace(path="/x/store.duckdb", meta={"uuid": "u1"})
    again = SimpleNamespace(path="/x/store.duckdb", meta={"uuid": "u1"})
    reingested = SimpleNamespace(path="/x/store.duckdb", meta={"uuid": "u2"})
    assert store_key(first) == store_key(again) != store_key(reingested)
