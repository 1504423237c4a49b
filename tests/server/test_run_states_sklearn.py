"""scikit-learn runs end as ``killed`` on SIGTERM and ``interrupted`` on Ctrl-C (issue 17).

A real ``GridSearchCV`` fit (a slow pipeline step, so the fit lasts) publishes from a subprocess
to a real ``mlops-hooks serve`` process; the test sends SIGTERM or SIGINT once the run is
``running`` on the server and reads the ``run_state`` with a real WebSocket client. In-process
tests check that the handler is there during a fit on the main thread only, and that the
previous one is back afterwards.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Any

import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from mlops_hooks.events import Event
from mlops_hooks.plugins.sklearn import MLOpsCallback, monitored_fit
from tests.live_server import LiveServer
from tests.server.live import recv_json, subscriber
from tests.server.test_run_states_live import FLAGS, LIVE, _process, _run, _state, _until

#: A search of 600 candidates x 3 folds whose first step sleeps 50 ms: it runs until ended.
SEARCH = """
import pathlib, sys, time
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from mlops_hooks.plugins.sklearn import MLOpsCallback

marker = pathlib.Path(sys.argv[2]).parent / "stepping"

def slow(x):
    marker.touch()
    time.sleep(0.05)
    return x

X, y = load_digits(return_X_y=True)
grid = {"logisticregression__C": [10.0 ** (k / 100) for k in range(-300, 300)]}
search = GridSearchCV(make_pipeline(FunctionTransformer(slow),
                                    LogisticRegression(max_iter=1000)), grid, cv=3)
search.set_callbacks(MLOpsCallback("sk-states", run_id=sys.argv[3]))
search.fit(X, y)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with LiveServer(tmp_path_factory.mktemp("sk-states"), extra_args=FLAGS,
                    startup_timeout=60) as live:
        yield live


async def _end_with(server: LiveServer, tmp_path: Any, run_id: str, sig: int,
                    want: str) -> tuple[dict[str, Any], int]:
    async with subscriber(f"{server.ws_url}?types=run_state") as sub:
        assert (await recv_json(sub))["type"] == "snapshot"
        async with _process(server, SEARCH, "fit", tmp_path, run_id) as proc:
            await _until(lambda: (tmp_path / "stepping").exists()
                         and _run_status(server, run_id) in LIVE,
                         "the search fitted and its run is live on the server", 200)
            proc.send_signal(sig)
            code = await proc.wait()
        return await _state(sub, run_id, want), code


def _run_status(server: LiveServer, run_id: str) -> str | None:
    try:
        return str(_run(server, run_id)["status"])
    except AssertionError:  # not on the server yet
        return None


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_sigterm_during_a_search_is_killed_then_the_process_dies_of_it(server, tmp_path):
    killed, code = asyncio.run(_end_with(server, tmp_path, "sk-term", signal.SIGTERM, "killed"))
    assert code == -signal.SIGTERM  # reported, then the default action
    assert killed["previous"] in LIVE and killed["model_name"] == "sk-states"
    assert killed["reason"].startswith("TERMINATED")
    assert _run(server, "sk-term")["status"] == "killed"


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_ctrl_c_during_a_search_is_interrupted(server, tmp_path):
    interrupted, code = asyncio.run(_end_with(server, tmp_path, "sk-int", signal.SIGINT,
                                              "interrupted"))
    assert code != 0
    assert interrupted["reason"].startswith("INTERRUPTED")
    assert _run(server, "sk-int")["status"] == "interrupted"


#: FunctionTransformer has no callback support: scikit-learn says so (the step still fits).
no_callback_warning = pytest.mark.filterwarnings(
    "ignore:The estimator FunctionTransformer does not support callbacks")


def _digits() -> tuple[Any, Any]:
    X, y = load_digits(return_X_y=True)
    return X[:300] / 16.0, y[:300]


@no_callback_warning
def test_the_sigterm_reporter_is_there_during_a_fit_and_gone_after():
    seen: list[Any] = []

    def look(x: Any) -> Any:
        seen.append(signal.getsignal(signal.SIGTERM))
        return x

    events: list[Event] = []
    search = GridSearchCV(make_pipeline(FunctionTransformer(look), LogisticRegression(
        max_iter=1000)), {"logisticregression__C": [0.1, 1.0]}, cv=2)
    search.set_callbacks(MLOpsCallback("sk-handler", emit=events.append))
    before = signal.getsignal(signal.SIGTERM)
    assert before is signal.SIG_DFL
    search.fit(*_digits())
    assert seen and all(callable(h) and h is not signal.SIG_DFL for h in seen)
    assert signal.getsignal(signal.SIGTERM) is before
    assert events[-2].type == "training_completed"


def test_monitored_fit_reports_sigterm_too_and_restores_the_default():
    seen: list[Any] = []

    class Recording(LogisticRegression):
        def fit(self, X: Any, y: Any, **kwargs: Any) -> Any:
            seen.append(signal.getsignal(signal.SIGTERM))
            return super().fit(X, y, **kwargs)

    events: list[Event] = []
    monitored_fit(Recording(max_iter=1000), *_digits(), emit=events.append)
    assert len(seen) == 1 and callable(seen[0]) and seen[0] is not signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert any(e.type == "training_completed" for e in events)


@no_callback_warning
def test_a_handler_of_the_program_is_kept_and_a_fit_off_the_main_thread_installs_none():
    def mine(signum: int, frame: Any) -> None:
        """The program's own SIGTERM handler."""

    seen: list[Any] = []

    def look(x: Any) -> Any:
        seen.append(signal.getsignal(signal.SIGTERM))
        return x

    def fit() -> None:
        search = GridSearchCV(make_pipeline(FunctionTransformer(look), LogisticRegression(
            max_iter=1000)), {"logisticregression__C": [1.0]}, cv=2)
        search.set_callbacks(MLOpsCallback("sk-thread", emit=lambda event: None))
        search.fit(*_digits())

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        fit()
        assert seen and all(h is mine for h in seen)
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
    seen.clear()
    worker = threading.Thread(target=fit)
    worker.start()
    worker.join()
    assert seen and all(h is signal.SIG_DFL for h in seen)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
