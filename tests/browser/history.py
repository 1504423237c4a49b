"""Helpers for the run history pages' browser tests: a server's history made from real events."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import ConsoleWatch
from tests.live_server import LiveServer

__all__ = ["History", "open_page", "progress"]


class History:
    """The server, and the events that make its run history."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.http_url = server.http_url

    def post(self, *events: dict[str, Any]) -> list[int]:
        seqs: list[int] = []
        for start in range(0, len(events), 500):  # well under the 1 MiB body limit
            response = httpx.post(self.http_url + "/api/events",
                                  json=list(events[start:start + 500]), timeout=30)
            assert response.status_code == 200, response.text
            seqs += response.json()["seqs"]
        return seqs

    def seed(self, runs: list[dict[str, Any]]) -> None:
        """Runs as the events a training script sends: params, one progress event with the
        last metrics, then the end the run's status names."""
        events: list[dict[str, Any]] = []
        for run in runs:
            at = run["started_at"]
            params = {"type": "run_params", "run_id": run["run_id"], "timestamp": at,
                      "model_name": run["model_name"], "params": run["params"]}
            if run.get("group"):
                params["group"] = run["group"]
            if run.get("group_size"):
                params["group_size"] = run["group_size"]
            metrics = dict(run["last_metrics"])
            progress_event: dict[str, Any] = {
                "type": "training_progress", "run_id": run["run_id"], "timestamp": at,
                "stage": "model_training", "current_step": 1, "progress": 50}
            if "loss" in metrics:
                progress_event["current_loss"] = metrics.pop("loss")
            if metrics:
                progress_event["metrics"] = metrics
            events += [params, progress_event]
            if run["status"] == "completed":
                events.append({"type": "training_completed", "run_id": run["run_id"],
                               "timestamp": at, "final_accuracy": run.get("final_accuracy")})
            elif run["status"] == "failed":
                events.append({"type": "training_failed", "run_id": run["run_id"],
                               "timestamp": at, "error": "boom", "error_code": "MEMORY_ERROR"})
        self.post(*events)


def open_page(page: Page, url: str) -> ConsoleWatch:
    console = ConsoleWatch(page)
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return console


def progress(run_id: str, step: int, **values: float) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "training_progress", "run_id": run_id,
                             "stage": "model_training", "current_step": step,
                             "progress": min(99, step)}
    if "loss" in values:
        event["current_loss"] = values.pop("loss")
    if "accuracy" in values:
        event["current_accuracy"] = values.pop("accuracy")
    if values:
        event["metrics"] = values
    return event
