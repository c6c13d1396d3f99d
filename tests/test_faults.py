"""Faults: an ingest killed anywhere, a damaged store, a full disk — never a partial or corrupt store."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
from oracle import load

from flatprint.errors import StoreError
from flatprint.ingest import ingest_release
from flatprint.store import Store

FAULT_SCALE = 0.002


def _ingest_cmd(release, target):
    code = (
        "import sys; from flatprint.ingest import ingest_release; "
        "ingest_release(sys.argv[1], sys.argv[2], progress=False, memory_limit='1GB', threads=1)"
    )
    return [sys.executable, "-c", code, str(release), str(target)]


def test_ingest_killed_at_random_points(release_factory, tmp_path):
    release = release_factory(3, FAULT_SCALE)
    target = tmp_path / "s.duckdb"
    started = time.perf_counter()
    subprocess.run(_ingest_cmd(release, target), check=True)
    full = time.perf_counter() - started
    expected_synapses = len(load(release, "syn-points"))
    rng = random.Random(7)
    for _attempt in range(20):
        target.unlink(missing_ok=True)
        proc = subprocess.Popen(_ingest_cmd(release, target))
        time.sleep(rng.uniform(0.0, full * 1.1))
        proc.send_signal(rng.choice([signal.SIGKILL, signal.SIGTERM]))
        proc.wait(timeout=120)
        if target.exists():  # it finished before the signal: then it must be whole
            store = Store.open(target)
            try:
                assert store.summary()["counts"]["synapses"] == expected_synapses
            finally:
                store.close()
    # whatever a killed run left behind is cleared by the next ingest, which succeeds
    target.unlink(missing_ok=True)
    ingest_release(release, target, progress=False, memory_limit="1GB")
    assert not list(tmp_path.glob(f".{target.name}.ingest-*"))
    assert Store.open(target).summary()["counts"]["synapses"] == expected_synapses


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_store_refused(store_path, tmp_path, damage):
    bad = tmp_path / "bad.duckdb"
    shutil.copy(store_path, bad)
    data = bytearray(bad.read_bytes())
    if damage == "truncate":
        bad.write_bytes(bytes(data[: len(data) // 3]))
    else:
        data[:4096] = os.urandom(4096)  # the header blocks
        bad.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="bad.duckdb"):
        Store.open(bad)
    env = {**os.environ, "FLATPRINT_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-m", "flatprint.cli", "serve", str(bad), "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "bad.duckdb" in proc.stderr and "error:" in proc.stderr


def test_disk_full(release_factory, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6M", "tmpfs", str(mount)], capture_output=True)
    if ok.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {ok.stderr.decode().strip()}")
    try:
        target = mount / "s.duckdb"
        with pytest.raises(StoreError, match="disk full"):
            ingest_release(release_factory(3, FAULT_SCALE), target, progress=False, memory_limit="1GB")
        assert not target.exists()
        assert list(mount.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)])
