"""The demo's work, stage by stage; each returns the summary of its line or raises.

Frameworks are imported inside the stages, so ``mlops-hooks demo --no-train`` (and importing
this package) needs only the server's dependencies.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlops_hooks.cli.demo._display import Display
from mlops_hooks.cli.demo._options import DemoOptions
from mlops_hooks.cli.demo._watch import DashboardWatcher

__all__ = ["STAGES", "Context", "StageFailed"]


class StageFailed(Exception):
    """A stage did not do what it should (the message is its summary)."""


@dataclass
class Context:
    """What the stages share."""

    options: DemoOptions
    display: Display
    watcher: DashboardWatcher
    stamp: str = field(default_factory=lambda: time.strftime("%Y%m%d_%H%M%S"))
    data: Any = None
    candidates: list[tuple[str, str, float, Callable[[Any], int]]] = field(default_factory=list)
    deployed: tuple[str, Callable[[Any], int]] | None = None

    def parts(self, *items: str) -> str:
        """Join status parts with the display's separator."""
        return f" {self.display.dot} ".join(i for i in items if i)


def upload(ctx: Context) -> str:
    """Write the digits as a CSV and upload it: ``upload_progress`` and ``file_validated``."""
    from mlops_hooks.cli.demo import _data

    plan = ctx.options.plan
    ctx.data = _data.load(plan.rows)
    path = ctx.options.workdir / "digits.csv"
    rows = _data.write_csv(path, ctx.data)
    ctx.display.update(detail=ctx.parts(f"{path.stat().st_size / 1024:,.0f} KB",
                                        f"POST {ctx.options.http_url}/api/files"))
    event = _data.upload_csv(ctx.options.http_url, path, seconds=plan.upload_seconds)
    if event.get("status") != "success":
        raise StageFailed(f"the server refused {path.name}: "
                          f"{event.get('error') or event}")
    return (f"{event.get('filename')}: {event.get('rows', rows):,} rows x "
            f"{event.get('columns')} columns, target '{event.get('target_column')}', "
            f"{event.get('file_size')}, validated")


def train(ctx: Context) -> str:
    """The Lightning MLP (about a minute on 2 cores): ``training_progress`` ... completed."""
    from mlops_hooks.cli.demo import _train

    plan = ctx.options.plan
    model_id = f"digits_mlp_{ctx.stamp}"
    result = _train.train(ctx.data, epochs=plan.epochs, batch_size=plan.batch_size,
                          hidden=plan.hidden, lr=plan.lr, model_id=model_id)
    ctx.candidates.append(("Digits Classifier (MLP)", model_id, result.accuracy,
                           _train.predictor(result.model)))
    return f"test accuracy {result.accuracy:.3f} after {plan.epochs} epochs"


def probe(ctx: Context) -> str:
    """A learning rate far too high: the run diverges and reports ``training_failed``."""
    from mlops_hooks.cli.demo import _train

    error = _train.probe(ctx.data, lr=ctx.options.plan.probe_lr)
    if error is None:
        raise StageFailed("the probe did not diverge, so no training_failed was sent")
    return f"diverged as intended, reported as training_failed: {error}"


def search(ctx: Context) -> str:
    """``GridSearchCV`` with the scikit-learn callback (worker processes included)."""
    from mlops_hooks.cli.demo import _search

    plan = ctx.options.plan
    model_id = f"digits_logreg_{ctx.stamp}"
    result = _search.search(ctx.data, grid_c=plan.grid_c, cv=plan.cv, model_id=model_id,
                            n_jobs=plan.n_jobs)
    ctx.candidates.append(("Digits Classifier (LogReg)", model_id, result.accuracy,
                           _search.predictor(result.estimator)))
    best = ", ".join(f"{k.split('__')[-1]}={v}" for k, v in result.best_params.items())
    return f"{result.fits} fits, best {best}, test accuracy {result.accuracy:.3f}"


def deploy(ctx: Context) -> str:
    """Deploy the most accurate model: ``model_deployed`` and an activity entry."""
    import mlops_hooks

    if not ctx.candidates:
        raise StageFailed("no model was trained, so there is nothing to deploy")
    name, model_id, accuracy, predict = max(ctx.candidates, key=lambda c: c[2])
    version = time.strftime("v%Y.%m.%d-%H%M")
    mlops_hooks.deploy(name, version, accuracy, model_id=model_id)
    ctx.deployed = (model_id, predict)
    others = [f"{c[0]} {c[2]:.3f}" for c in ctx.candidates if c[1] != model_id]
    versus = f" (vs {', '.join(others)})" if others else ""
    return f"{name} {version}, test accuracy {accuracy:.3f}{versus}"


def traffic(ctx: Context) -> str:
    """A burst of requests through ``PredictionMonitor``, with an incident of bad requests."""
    from mlops_hooks.cli.demo._traffic import send_traffic

    if ctx.deployed is None or ctx.data is None:
        raise StageFailed("no deployed model to send requests to")
    model_id, predict = ctx.deployed
    result = send_traffic(
        predict, ctx.data.x_test, ctx.data.y_test, model_id=model_id, plan=ctx.options.plan,
        progress=lambda pct, items: ctx.display.update(pct, ctx.parts(*items)))
    served = result.requests - result.errors
    return (f"{result.requests:,} requests in {result.seconds:.1f}s, {result.errors} malformed "
            f"ones failed, {result.correct / max(1, served):.1%} of the others right; model "
            f"{' -> '.join(result.statuses)}")


def health(ctx: Context) -> str:
    """``health_change`` and ``system_alert`` from the server's monitor."""
    from mlops_hooks.cli.demo._health import exercise_health

    plan = ctx.options.plan
    return exercise_health(ctx.watcher, spike_timeout=plan.spike_timeout,
                           recovery_timeout=plan.recovery_timeout,
                           progress=lambda text: ctx.display.update(detail=text))


#: ``(title, short name for the status line, stage)`` in the order they run.
STAGES: tuple[tuple[str, str, Callable[[Context], str]], ...] = (
    ("Upload and validate digits.csv", "upload", upload),
    ("Lightning: MLP on the digits", "Lightning MLP", train),
    ("Lightning: learning-rate probe (diverges on purpose)", "LR probe", probe),
    ("scikit-learn: GridSearchCV", "GridSearchCV", search),
    ("Deploy the best model", "deploy", deploy),
    ("Prediction traffic through PredictionMonitor", "traffic", traffic),
    ("Server health monitor", "health", health),
)
