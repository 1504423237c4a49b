"""Optuna: a study as a group of runs, each trial live, pruned trials marked.

``study.optimize(objective, n_trials=..., callbacks=[cb])`` makes every trial a run of the
group named after the study (``group_size`` = ``n_trials``), with the trial's params, its
value and the study's best value so far. ``with cb.trial_run(trial):`` inside the objective
shows a trial while it runs, its ``trial.report`` values as a series; trials the
``MedianPruner`` stops complete with ``stop_reason: "pruned"``.

Run a server first (``mlops-hooks serve``), then::

    python examples/optuna_study.py
"""

from __future__ import annotations

import argparse

import numpy as np
import optuna
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split

from mlops_hooks.plugins.optuna import MLOpsCallback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=8, help="partial_fit passes per trial")
    parser.add_argument("--n-jobs", type=int, default=1)
    args = parser.parse_args()

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=0.25,
                                                      stratify=y, random_state=0)
    callback = MLOpsCallback(steps_per_trial=args.epochs)

    def objective(trial: optuna.Trial) -> float:
        alpha = trial.suggest_float("alpha", 1e-6, 1.0, log=True)
        loss = trial.suggest_categorical("loss", ["hinge", "log_loss"])
        with callback.trial_run(trial):
            model = SGDClassifier(alpha=alpha, loss=loss, random_state=trial.number)
            for epoch in range(args.epochs):
                model.partial_fit(x_train, y_train, classes=np.arange(10))
                score = float(model.score(x_val, y_val))
                trial.report(score, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        return score

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="digits-sgd (Optuna example)", direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2))
    study.optimize(objective, n_trials=args.trials, n_jobs=args.n_jobs, callbacks=[callback])
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    print(f"best {study.best_params}, value {study.best_value:.3f}, {pruned} pruned")


if __name__ == "__main__":
    main()
