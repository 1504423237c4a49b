"""Offline and spilled Lightning runs, synced later, land in the history as if streamed live.

Each fit is watched by two publishers at once (one event stream, stamped once): one streams to
server A live, the other keeps the run on disk (``MLOPS_HOOKS_MODE=offline``, or an online
publisher whose server is down and whose buffer overflows). ``mlops-hooks sync`` then sends the
disk copy to server B, and B's history must equal A's.
"""

from __future__ import annotations

import json

import lightning.pytorch as L
import pytest

from mlops_hooks.formatting import iso_utc
from mlops_hooks.manager import hookimpl
from mlops_hooks.plugins.lightning import MLOpsCallback
from mlops_hooks.publisher import Publisher
from tests.live_server import LiveServer, free_port
from tests.plugins.lightning_models import DigitsMLP, digits_loaders
from tests.sync.support import counter, history, run_sync

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*GPU available but not used:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),
    pytest.mark.timeout(400),
]


class StampOnce:
    """Gives every event its timestamp before the publishers see it: both copies carry the
    same one (each publisher would otherwise stamp its own, microseconds apart)."""

    @hookimpl(tryfirst=True)
    def mlops_event(self, event, side):
        if event.timestamp is None:
            event.timestamp = iso_utc()


def fit(pm, name: str) -> None:
    train, val = digits_loaders(batch_size=16)
    L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False,
              enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
              callbacks=[MLOpsCallback(name, emit=pm.dispatch)]).fit(DigitsMLP(), train, val)


def run_ids(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_offline_and_spilled_runs_sync_to_the_history_a_live_run_gives(pm, recorder,
                                                                       monkeypatch, tmp_path):
    pm.register(StampOnce(), name="stamp")
    offline_dir, spilled_dir = tmp_path / "offline", tmp_path / "spilled"
    with LiveServer(tmp_path / "a") as live, LiveServer(tmp_path / "b") as later:
        streaming = Publisher(live.ws_url, plugin_manager=pm)
        pm.register(streaming, name="live")
        try:
            # 1. MLOPS_HOOKS_MODE=offline: the run is written to its directory, no socket
            monkeypatch.setenv("MLOPS_HOOKS_MODE", "offline")
            monkeypatch.setenv("MLOPS_HOOKS_DIR", str(offline_dir))
            kept = Publisher(f"ws://127.0.0.1:{free_port()}/ws", plugin_manager=pm)
            monkeypatch.delenv("MLOPS_HOOKS_MODE")
            pm.register(kept, name="offline")
            fit(pm, "offline-fit")
            assert kept.close(10) and kept.status()["sent"] == 0
            pm.unregister(name="offline")
            # 2. online, the server down past a small buffer: the run spills to disk
            monkeypatch.setenv("MLOPS_HOOKS_DIR", str(spilled_dir))
            down = Publisher(f"ws://127.0.0.1:{free_port()}/ws", plugin_manager=pm,
                             buffer_size=8)
            pm.register(down, name="down")
            fit(pm, "spilled-fit")
            down.close(0)
            assert down.status()["dropped"] == 0  # spilled, not dropped
            pm.unregister(name="down")
            assert streaming.flush(30)
        finally:
            streaming.close(5)
        (offline_run,), (spilled_run,) = run_ids(offline_dir), run_ids(spilled_dir)
        for directory, run_id, how in ((offline_dir, offline_run, "offline"),
                                       (spilled_dir, spilled_run, "spilled")):
            meta = json.loads((directory / run_id / "run.json").read_text())
            assert meta["run_id"] == run_id and meta["status"] == "completed"
            assert meta["mode"] == how and meta["started"] and meta["ended"] and meta["host"]
        emitted = {run_id: [e for e in recorder.events if e.run_id == run_id]
                   for run_id in (offline_run, spilled_run)}
        lines = {run_id: (directory / run_id / "events.jsonl").read_text().splitlines()
                 for directory, run_id in ((offline_dir, offline_run),
                                           (spilled_dir, spilled_run))}
        for run_id, rows in lines.items():  # every event on disk, in order, as emitted
            assert [json.loads(r)["timestamp"] for r in rows] == \
                [e.timestamp for e in emitted[run_id]]

        result = run_sync(str(offline_dir / offline_run), str(spilled_dir), "--url",
                          later.ws_url)
        assert result.returncode == 0, result.stderr
        total = sum(len(rows) for rows in lines.values())
        assert f"synced 2 run(s) to {later.http_url}: {total} event(s) sent, 0 already " \
               "there, 0 skipped (synced before), 0 bad line(s)" in result.stdout
        assert "[##############################]" in result.stderr  # the progress bar, full
        for run_id in (offline_run, spilled_run):
            assert history(later.http_url, run_id) == history(live.http_url, run_id)
        assert history(later.http_url, offline_run)[2]  # it has series to compare

        # a second sync adds nothing: the sync record says everything is there
        stored = counter(later.http_url, "mlops_hooks_events_in_total", "training_progress")
        again = run_sync(str(offline_dir), str(spilled_dir), "--url", later.ws_url)
        assert again.returncode == 0, again.stderr
        assert f"0 event(s) sent, 0 already there, {total} skipped (synced before)" \
            in again.stdout
        # without the record (lost, or another copy of the directory), the server's
        # idempotency on event_id still stores nothing twice
        (offline_dir / offline_run / "sync.json").unlink()
        third = run_sync(str(offline_dir), "--url", later.ws_url)
        assert third.returncode == 0, third.stderr
        n = len(lines[offline_run])
        assert f"0 event(s) sent, {n} already there, 0 skipped" in third.stdout
        assert counter(later.http_url, "mlops_hooks_events_in_total",
                       "training_progress") == stored
        for run_id in (offline_run, spilled_run):
            assert history(later.http_url, run_id) == history(live.http_url, run_id)
