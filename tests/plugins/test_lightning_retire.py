"""The publisher's thread ends with the fit when the server was never reached (issue 25).

Lightning's own tests fail a test that leaves a thread alive; a fit against a URL where no
server listens must leave none of ours, keep its events on disk, and a later run must start
delivery again once the server is there.
"""

from __future__ import annotations

import json
import threading

import httpx
import lightning.pytorch as L
import pytest

from mlops_hooks.plugins.lightning import MLOpsCallback
from mlops_hooks.publisher import Publisher
from tests.live_server import LiveServer, free_port
from tests.plugins.lightning_models import DigitsMLP, digits_loaders

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*GPU available but not used:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),
    pytest.mark.timeout(240),
]


def fit(pm, name: str) -> None:
    train, val = digits_loaders(batch_size=16)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False,
                        callbacks=[MLOpsCallback(name, emit=pm.dispatch)])
    trainer.fit(DigitsMLP(), train, val)


def our_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("mlops-hooks")]


def test_the_thread_ends_with_a_fit_the_server_never_saw_and_a_later_run_restarts_it(
        pm, monkeypatch, tmp_path):
    runs = tmp_path / "runs"
    monkeypatch.setenv("MLOPS_HOOKS_DIR", str(runs))
    port = free_port()  # nothing listens there during the first fit
    publisher = Publisher(f"ws://127.0.0.1:{port}/ws", plugin_manager=pm)
    pm.register(publisher, name="dead-server")  # "publisher" is blocked in these tests
    try:
        fit(pm, "unseen")
        assert our_threads() == []  # right after fit: Lightning's zombie-thread check passes
        (run,) = runs.iterdir()
        rows = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
        types = [r["type"] for r in rows]
        assert types.count("training_completed") == 1 and "training_progress" in types
        assert {r["run_id"] for r in rows} == {run.name}
        assert all(r["event_id"] and r["timestamp"] for r in rows)
        meta = json.loads((run / "run.json").read_text())
        assert meta["status"] == "completed" and meta["mode"] == "spilled"
        assert meta["model_name"] == "unseen" and meta["run_id"] == run.name
        assert publisher.status()["buffered"] == 0  # everything is on disk, nothing in memory

        with LiveServer(tmp_path / "server", port=port) as server:
            fit(pm, "seen")  # the next event starts a new thread, which reaches the server
            assert publisher.flush(30)
            assert our_threads() == ["mlops-hooks-publisher"]  # reached: it stays, as always
            listed = httpx.get(server.http_url + "/api/runs").json()
        assert [r["model_name"] for r in listed["runs"]] == ["seen"]
        assert listed["runs"][0]["run_id"] != run.name  # the first run waits for a sync
        assert len(list(runs.iterdir())) == 1  # the second run was delivered, not kept
    finally:
        publisher.close(0)
