"""A whole run on a real 3 MB disk that fills up: entries halt with reason "storage", status
says so, fills wait in memory and reach the ledger once there is room, and a stop on a full
disk completes and removes its shared memory."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from shared.store import Store, db_path
from tests.orchestrator.test_trading_e2e import TIGHT, venue_client

pytestmark = pytest.mark.slow



async def _venue_fill_ids(run_dir: Path) -> set[str]:
    async with venue_client(run_dir) as rest:
        ids = [p.id for p in await rest.get_products() if p.symbol in ("BTCUSD", "ETHUSD")]
        return {str(f.id) for f in await rest.get_fills(ids)}


def _ledger_fill_ids(run_dir: Path) -> set[str]:
    with Store(db_path(run_dir), readonly=True) as store:
        return {f.fill_id for f in store.fills()}


def test_a_full_disk_halts_entries_loses_no_fill_and_still_stops_clean(start_run, small_disk, tmp_path: Path) -> None:
    cfg = tmp_path / "tight.toml"
    cfg.write_text(TIGHT)
    run = start_run(["--config", str(cfg), "--symbols", "BTCUSD,ETHUSD", "--pool-size", "1"],
                    run_dir=small_disk.path / "run")
    run.wait_for(lambda d: sum(1 for w in d["workers"] if w["fees"] > 0) >= 1, 90, "fills")

    small_disk.fill()
    doc = run.wait_for(lambda d: d["storage"].startswith("failing"), 60, "the ledger write failure seen")
    assert doc["halted"] and doc["halt_reason"].startswith("storage: "), doc["halt_reason"]
    assert "disk is full" in doc["storage"] or "No space left" in doc["storage"], doc["storage"]
    doc = run.wait_for(lambda d: all(w["trading"].startswith("halted: storage") for w in d["workers"]),
                       30, "every bot halted for storage")
    full_since = time.monotonic()
    while time.monotonic() - full_since < 3:  # resting orders keep filling meanwhile
        time.sleep(0.5)
    venue_fills = asyncio.run(_venue_fill_ids(run.run_dir))

    small_disk.free()
    doc = run.wait_for(lambda d: d["storage"] == "ok", 30, "the ledger writable again")
    assert doc["halted"]  # entries stay halted until the operator lifts it (resume --all)
    deadline = time.monotonic() + 20
    while not venue_fills <= (stored := _ledger_fill_ids(run.run_dir)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert venue_fills <= stored, f"fills on the venue but not in the ledger: {sorted(venue_fills - stored)}"

    sup_pid = doc["supervisor_pid"]
    small_disk.fill()
    elapsed = run.terminate(timeout_s=30)
    out = run.proc.stdout.read() if run.proc.stdout else ""
    small_disk.free()
    assert run.proc.returncode == 0, out[-3000:]
    assert elapsed < 15, elapsed
    assert "Traceback" not in out, out[-3000:]
    assert not list(Path("/dev/shm").glob(f"dgo-{sup_pid}-*")), "shared memory left behind"
    assert not (run.run_dir / "segments.json").exists()  # removed only because the segment is gone
