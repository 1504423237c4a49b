"""The run history pages (issue 16) in real Chromium: `/runs`, `/runs/{id}`, `/compare`.

A real server (``mlops-hooks serve``) fed by real events through ``POST /api/events``: the
pages read its ``GET /api/runs...`` routes and follow its ``/ws``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Dashboard
from tests.browser.history import History, open_page, progress
from tests.live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

XSS = '<img src=x onerror="window.__xss=1">'
SERVER_ARGS = ["--metrics-interval", "0", "--stall-timeout", "0"]


def run(run_id: str, **fields: Any) -> dict[str, Any]:
    return {"run_id": run_id, "model_name": run_id.upper(), "status": "completed",
            "started_at": "2026-01-01T00:00:00Z", "params": {}, "last_metrics": {}, **fields}


def row_ids(page: Page) -> list[str]:
    return list(page.locator("#runs-body tr").evaluate_all(
        "rows => rows.map(r => r.dataset.runId)"))


def test_vendored_uplot_is_served_with_the_security_headers(stub: History) -> None:
    for path in ("/static/vendor/uplot/uPlot.esm.js", "/static/vendor/uplot/uPlot.min.css",
                 "/runs", "/runs/abc", "/runs/a%2Fb", "/compare"):
        response = httpx.get(stub.http_url + path, timeout=10)
        assert response.status_code == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"], path
        assert response.headers["x-frame-options"] == "DENY", path


def test_table_renders_sorts_and_filters(page: Page, stub: History) -> None:
    stub.seed([
        run("alpha", params={"lr": 0.1, "opt": "adam"}, last_metrics={"loss": 0.5},
            final_accuracy=0.81, started_at="2026-01-01T00:00:03Z", duration_s=30),
        run("beta", params={"lr": 0.01, "opt": "adam"}, last_metrics={"loss": 0.2},
            final_accuracy=0.93, started_at="2026-01-01T00:00:02Z", duration_s=10,
            group="sweep"),
        run("gamma", status="failed", params={"lr": 0.001, "opt": "adam"},
            last_metrics={"loss": 0.9}, started_at="2026-01-01T00:00:01Z"),
    ])
    console = open_page(page, stub.http_url + "/runs")
    expect(page.locator("#runs-body tr")).to_have_count(3)
    assert row_ids(page) == ["alpha", "beta", "gamma"]  # newest first
    # Key params: lr differs, opt does not.
    expect(page.locator('#runs-head th[data-col="p:lr"]')).to_have_count(1)
    expect(page.locator('#runs-head th[data-col="p:opt"]')).to_have_count(0)
    page.locator('#runs-head button[data-col="m:loss"]').click()
    expect(page.locator("#runs-body tr").first).to_have_attribute("data-run-id", "beta")
    assert row_ids(page) == ["beta", "alpha", "gamma"]
    page.locator('#runs-head button[data-col="m:loss"]').click()
    expect(page.locator("#runs-body tr").first).to_have_attribute("data-run-id", "gamma")
    page.locator("#status-filter").select_option("failed")
    expect(page.locator("#runs-body tr")).to_have_count(1)
    page.locator("#status-filter").select_option("")
    page.locator("#runs-filter").fill("alp")
    expect(page.locator("#runs-body tr")).to_have_count(1)
    expect(page.locator("#runs-body tr").first).to_have_attribute("data-run-id", "alpha")
    assert "q=alp" in page.url  # a reload keeps the filter
    console.assert_clean()


def test_a_thousand_runs_with_load_more(page: Page, stub: History) -> None:
    stub.seed([run(f"r{i:04d}", started_at=f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:"
                   f"{i % 60:02d}Z", params={"lr": i / 1000}, last_metrics={"loss": 1 - i / 1000})
               for i in range(1050)])
    console = open_page(page, stub.http_url + "/runs?limit=500")
    expect(page.locator("#runs-body tr")).to_have_count(500)
    page.locator("#runs-more").click()
    expect(page.locator("#runs-body tr")).to_have_count(1000)
    assert page.locator("#runs-body input[type=checkbox]").count() == 1000
    page.locator("#runs-more").click()
    expect(page.locator("#runs-body tr")).to_have_count(1050)
    expect(page.locator("#runs-more")).to_be_hidden()
    page.locator('#runs-head button[data-col="m:loss"]').click()
    expect(page.locator("#runs-body tr").first).to_have_attribute("data-run-id", "r1049")
    console.assert_clean()


def test_live_events_add_a_row_and_update_status_in_place(page: Page, stub: History) -> None:
    stub.seed([run("old", started_at="2026-01-01T00:00:00Z", last_metrics={"loss": 0.5})])
    console = open_page(page, stub.http_url + "/runs")
    expect(page.locator("#runs-body tr")).to_have_count(1)
    page.evaluate("document.querySelector('#runs-body tr').dataset.marker = 'kept'")
    stub.post({"type": "training_progress", "run_id": "live-1", "model_name": "Live one",
               "stage": "model_training", "progress": 40, "current_epoch": 2,
               "current_loss": 0.4})
    row = page.locator('#runs-body tr[data-run-id="live-1"]')
    expect(row).to_have_attribute("data-status", "running")
    assert row_ids(page) == ["live-1", "old"]
    expect(row.locator('td[data-col="progress"]')).to_have_text("40%")
    stub.post({"type": "training_progress", "run_id": "live-1", "stage": "model_training",
               "progress": 70, "current_epoch": 3, "current_loss": 0.3})
    expect(row.locator('td[data-col="progress"]')).to_have_text("70%")
    stub.post({"type": "training_completed", "run_id": "live-1", "final_accuracy": 0.9})
    expect(row).to_have_attribute("data-status", "completed")
    expect(row.locator('td[data-col="final_accuracy"]')).to_have_text("90.0%")
    # In place: the other row is the same element, never reloaded.
    old = page.locator('#runs-body tr[data-run-id="old"]')
    expect(old).to_have_attribute("data-marker", "kept")
    console.assert_clean()


def test_xss_in_names_and_params_is_text(page: Page, stub: History) -> None:
    stub.seed([run("x1", model_name=XSS, params={"evil": XSS}, group=XSS),
               run("x2", model_name="file\u202egnp.exe", params={"evil": "fine\u2066"})])
    console = open_page(page, stub.http_url + "/runs")
    expect(page.locator('#runs-body tr[data-run-id="x2"] .run-link')).to_have_text("filegnp.exe")
    expect(page.locator('#runs-body tr[data-run-id="x2"] td[data-col="p:evil"]')).to_have_text(
        "fine")
    expect(page.locator('#runs-body tr[data-run-id="x1"] td[data-col="p:evil"]')).to_have_text(XSS)
    expect(page.locator('#runs-body tr[data-run-id="x1"] .run-link')).to_have_text(XSS)
    assert page.locator("#runs-body img").count() == 0
    assert page.evaluate("window.__xss") is None
    console.assert_clean()


def chart_points(page: Page, key: str) -> Any:
    return expect(page.locator(f'figure.chart-card[data-key="{key}"] .chart'))


def test_run_page_charts_every_series_live_and_after_reload(page: Page,
                                                           stub: History) -> None:
    stub.post({"type": "run_params", "run_id": "r1", "model_name": "ResNet", "group": "sweep",
               "params": {"lr": 0.01, "batch_size": 32, "note": XSS},
               "metadata": {"host": "gpu-box", "pid": 42, "python": "3.12.1",
                            "frameworks": {"torch": "2.13.0"}, "command": "train.py --fast",
                            "git": {"commit": "abc1234", "dirty": True}}},
              *[progress("r1", s, loss=1 / s, accuracy=s / 10, val_loss=2 / s)
                for s in range(1, 6)])
    console = open_page(page, stub.http_url + "/runs/r1")
    expect(page.locator("#run-name")).to_have_text("ResNet")
    expect(page.locator("#run-status")).to_have_text("running")
    expect(page.locator("#run-meta")).to_contain_text("gpu-box")
    expect(page.locator("#run-meta")).to_contain_text("torch 2.13.0")
    expect(page.locator("#run-meta")).to_contain_text("abc1234 (dirty)")
    expect(page.locator('#params-body tr[data-param="note"] td')).to_have_text(XSS)
    assert page.locator("main img").count() == 0
    for key in ("loss", "accuracy", "val_loss"):
        chart_points(page, key).to_have_attribute("data-points", "5")
        expect(page.locator(f'figure[data-key="{key}"] canvas')).to_have_count(1)
    assert page.locator("figure.chart-card").evaluate_all(
        "els => els.map(e => e.dataset.key)") == ["loss", "accuracy", "val_loss"]
    # Live: the next event extends the charts and can add a series.
    stub.post(progress("r1", 6, loss=0.1, accuracy=0.6, val_loss=0.3, lr=0.001),
              progress("other", 1, loss=9.0))
    chart_points(page, "loss").to_have_attribute("data-points", "6")
    chart_points(page, "lr").to_have_attribute("data-points", "1")
    assert page.evaluate("window.mlopsRunPage.state.series.get('loss').ys.at(-1)") == 0.1
    stub.post({"type": "training_completed", "run_id": "r1", "final_accuracy": 0.6})
    expect(page.locator("#run-status")).to_have_text("completed")
    # A reload shows the whole history, from the server.
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    chart_points(page, "loss").to_have_attribute("data-points", "6")
    chart_points(page, "lr").to_have_attribute("data-points", "1")
    expect(page.locator("#run-status")).to_have_text("completed")
    console.assert_clean()


def test_compare_overlays_series_and_highlights_differing_params(page: Page,
                                                                 stub: History) -> None:
    stub.post({"type": "run_params", "run_id": "a", "model_name": "A",
               "params": {"lr": 0.1, "opt": "adam", "evil": XSS}},
              {"type": "run_params", "run_id": "b", "model_name": "B",
               "params": {"lr": 0.01, "opt": "adam", "evil": XSS}},
              *[progress("a", s, loss=1 / s) for s in range(1, 4)],
              *[progress("b", s, loss=2 / s, accuracy=0.5) for s in range(2, 6)])
    console = open_page(page, stub.http_url + "/runs")
    expect(page.locator("#runs-body tr")).to_have_count(2)
    expect(page.locator("#compare-button")).to_be_disabled()
    page.locator('#runs-body input[data-run-id="a"]').check()
    page.locator('#runs-body input[data-run-id="b"]').check()
    page.locator("#compare-button").click()
    page.wait_for_url("**/compare?runs=*")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator('#compare-body tr[data-param="lr"]')).to_have_class("differs")
    expect(page.locator('#compare-body tr[data-param="opt"]')).not_to_have_class("differs")
    expect(page.locator('#compare-body tr[data-param="evil"] td').first).to_have_text(XSS)
    chart_points(page, "loss").to_have_attribute("data-points", "7")  # 3 + 4
    chart_points(page, "accuracy").to_have_attribute("data-points", "4")
    legend = page.locator('figure[data-key="loss"] .u-legend .u-label')
    expect(legend).to_have_text(["step", "A", "B"])
    stub.post(progress("a", 4, loss=0.2))
    chart_points(page, "loss").to_have_attribute("data-points", "8")
    assert page.locator("main img").count() == 0
    console.assert_clean()


def test_group_view_counts_best_and_scatter(page: Page, stub: History) -> None:
    stub.seed([
        run("g1", group="sweep", params={"lr": 0.1}, final_accuracy=0.7),
        run("g2", group="sweep", params={"lr": 0.01}, final_accuracy=0.9),
        run("g3", group="sweep", status="failed", params={"lr": 1.0}),
        run("other", group="else", final_accuracy=0.99),
    ])
    console = open_page(page, stub.http_url + "/runs?group=sweep")
    expect(page.locator("#runs-body tr")).to_have_count(3)
    expect(page.locator("#group-summary")).to_have_text("2 done · 0 running · 1 failed")
    expect(page.locator("#group-done")).to_have_text("2")
    expect(page.locator("#group-failed")).to_have_text("1")
    expect(page.locator("#group-planned")).to_have_text("—")
    expect(page.locator("#group-best")).to_have_attribute("data-run-id", "g2")
    expect(page.locator("#group-scatter")).to_have_attribute("data-points", "2")
    expect(page.locator("#group-scatter canvas")).to_have_count(1)
    stub.post({"type": "run_params", "run_id": "g4", "group": "sweep", "params": {"lr": 0.05}},
              progress("g4", 1, loss=0.5),
              {"type": "training_completed", "run_id": "g4", "final_accuracy": 0.95})
    expect(page.locator("#group-best")).to_have_attribute("data-run-id", "g4")
    expect(page.locator("#group-summary")).to_have_text("3 done · 0 running · 1 failed")
    expect(page.locator("#group-scatter")).to_have_attribute("data-points", "3")
    console.assert_clean()


def test_group_view_counts_out_of_planned_live_from_the_stream(page: Page, stub: History) -> None:
    stub.seed([run("p1", group="study", group_size=4, final_accuracy=0.6),
               run("p2", group="study", status="failed", group_size=4)])
    console = open_page(page, stub.http_url + "/runs?group=study")
    summary = page.locator("#group-summary")
    expect(summary).to_have_text("1 done · 0 running · 1 failed of 4 planned")
    expect(page.locator("#group-planned")).to_have_text("4")
    api_reads: list[str] = []  # pushed over /ws from here on: the page reads no REST route
    page.on("request", lambda r: api_reads.append(r.url) if "/api/" in r.url else None)
    # a new trial starts (the study re-planned to 6 trials): running, then done
    stub.post({"type": "run_params", "run_id": "p3", "group": "study", "group_size": 6,
               "params": {"lr": 0.1}}, progress("p3", 1, loss=0.5))
    expect(summary).to_have_text("1 done · 1 running · 1 failed of 6 planned")
    expect(page.locator("#group-running")).to_have_text("1")
    stub.post({"type": "training_completed", "run_id": "p3", "final_accuracy": 0.8})
    expect(summary).to_have_text("2 done · 0 running · 1 failed of 6 planned")
    expect(page.locator("#group-best")).to_have_attribute("data-run-id", "p3")
    assert api_reads == []
    console.assert_clean()


def test_the_pages_run_under_the_real_content_security_policy(
        chromium: Any, stub: History) -> None:
    stub.post({"type": "run_params", "run_id": "c1", "params": {"lr": 0.1}},
              {"type": "run_params", "run_id": "c2", "params": {"lr": 0.2}},
              *[progress("c1", s, loss=1 / s) for s in range(1, 4)],
              progress("c2", 1, loss=0.5))
    context = chromium(bypass_csp=False)
    try:
        page = context.new_page()
        violations: list[str] = []
        page.on("console", lambda m: violations.append(m.text)
                if "Content Security Policy" in m.text else None)
        console = open_page(page, stub.http_url + "/runs?group=")
        expect(page.locator("#runs-body tr")).to_have_count(2)
        open_page(page, stub.http_url + "/runs/c1")
        chart_points(page, "loss").to_have_attribute("data-points", "3")
        open_page(page, stub.http_url + "/compare?runs=c1,c2")
        chart_points(page, "loss").to_have_attribute("data-points", "4")
        assert not violations, violations
        console.assert_clean()
    finally:
        context.close()


def test_the_token_goes_along_to_rest_ws_and_links(page: Page, tmp_path: Path) -> None:
    server = LiveServer(tmp_path, extra_args=[*SERVER_ARGS, "--subscriber-token", "s3cret"])
    server.start()
    stub = History(server)
    try:
        stub.post({"type": "run_params", "run_id": "t1", "params": {"lr": 1}},
                  progress("t1", 1, loss=0.5), progress("t1", 2, loss=0.4))
        assert httpx.get(stub.http_url + "/api/runs", timeout=10).status_code == 401
        console = open_page(page, stub.http_url + "/runs?token=s3cret")
        expect(page.locator("#conn-text")).to_have_text("Live")
        link = page.locator('#runs-body tr[data-run-id="t1"] .run-link')
        expect(link).to_have_attribute("href", "/runs/t1?token=s3cret")
        link.click()
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        chart_points(page, "loss").to_have_attribute("data-points", "2")
        stub.post(progress("t1", 3, loss=0.3))
        chart_points(page, "loss").to_have_attribute("data-points", "3")
        console.assert_clean()
    finally:
        server.stop()


def test_the_dashboard_links_to_the_runs_and_each_run_page(dash: Dashboard) -> None:
    page = dash.open(token="")
    dash.wait_live()
    expect(page.locator("#runs-link")).to_have_attribute("href", "/runs")
    seq = dash.post({"type": "training_progress", "run_id": "run/1 x", "stage": "model_training",
                     "progress": 10})[-1]
    dash.wait_for_seq(seq)
    link = page.locator('article.run[data-run-id="run/1 x"] a.run-history')
    expect(link).to_have_attribute("href", "/runs/run%2F1%20x")
    dash.console.assert_clean()


def test_a_run_page_opened_before_the_run_starts_fills_in_live(page: Page,
                                                               stub: History) -> None:
    console = open_page(page, stub.http_url + "/runs/early")
    expect(page.locator("#page-error")).to_contain_text('no run "early"')
    stub.post(progress("early", 1, loss=0.9), progress("early", 2, loss=0.8))
    chart_points(page, "loss").to_have_attribute("data-points", "2")
    expect(page.locator("#page-error")).to_be_hidden()
    expect(page.locator("#run-status")).to_have_text("running")
    console.assert_clean(network_noise=True)  # the 404 of the first read


def test_the_run_page_after_a_server_restart_shows_the_whole_history(
        page: Page, stub: History) -> None:
    stub.post({"type": "run_params", "run_id": "kept", "params": {"lr": 0.5}},
              *[progress("kept", s, loss=1 / s) for s in range(1, 8)])
    stub.server.stop()
    stub.server.start()  # same port, same database
    console = open_page(page, stub.http_url + "/runs/kept")
    chart_points(page, "loss").to_have_attribute("data-points", "7")
    expect(page.locator('#params-body tr[data-param="lr"] td')).to_have_text("0.5")
    console.assert_clean()


def test_a_tracked_training_script_fills_the_run_page(page: Page, stub: History,
                                                      tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        "import mlops_hooks\n"
        "with mlops_hooks.track('e2e model', total_epochs=3, run_id='e2e', group='sweep-e2e',\n"
        "                       params={'lr': 0.01, 'optimizer': {'name': 'adam'}}) as run:\n"
        "    for epoch in range(3):\n"
        "        run.epoch_end(epoch, loss=1 / (epoch + 1), accuracy=0.5 + epoch / 10,\n"
        "                      metrics={'val_loss': 2 / (epoch + 1)})\n")
    env = {**os.environ, "MLOPS_HOOKS_URL": stub.server.ws_url, "MLOPS_HOOKS_DISABLE": ""}
    done = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, timeout=60,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    console = open_page(page, stub.http_url + "/runs/e2e")
    expect(page.locator("#run-status")).to_have_text("completed")
    expect(page.locator('#params-body tr[data-param="lr"] td')).to_have_text("0.01")
    expect(page.locator('#params-body tr[data-param="optimizer.name"] td')).to_have_text("adam")
    expect(page.locator("#run-meta")).to_contain_text("python")
    # Every point the server kept (the publisher may coalesce progress sent faster than it
    # sends), every series charted.
    series = httpx.get(stub.http_url + "/api/runs/e2e/metrics", timeout=10).json()["series"]
    assert {"loss", "accuracy", "val_loss"} <= set(series)
    for key, points in series.items():
        chart_points(page, key).to_have_attribute("data-points", str(len(points)))
    page.goto(stub.http_url + "/runs?group=sweep-e2e")
    expect(page.locator("#group-summary")).to_have_text("1 done · 0 running · 0 failed")
    expect(page.locator("#group-best")).to_have_attribute("data-run-id", "e2e")
    console.assert_clean()
