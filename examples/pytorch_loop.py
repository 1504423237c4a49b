"""A hand-written PyTorch loop reported with ``mlops_hooks.track()``.

No framework callback needed: the ``Run`` that ``track()`` returns is told about stages, steps
(with the loss tensor, converted only when an event is sent), epoch ends and completion. An
exception inside the ``with`` block is reported as ``training_failed`` (error code,
suggestions, the stage and progress it happened at) and re-raised unchanged.

Run a server first (``mlops-hooks serve``), then::

    python examples/pytorch_loop.py --epochs 10
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

import mlops_hooks


def evaluate(model: torch.nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(dim=1) == y).sum())
            total += len(y)
    model.train()
    return correct / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.manual_seed(0)

    with mlops_hooks.track("digits-mlp (PyTorch loop example)", total_epochs=args.epochs,
                           model_id="digits_mlp_torch") as run:
        run.stage("data_preparation")
        x, y = load_digits(return_X_y=True)
        x_train, x_val, y_train, y_val = train_test_split(
            torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y), test_size=0.2,
            stratify=y, random_state=0)
        train = DataLoader(TensorDataset(x_train, y_train), batch_size=args.batch_size,
                           shuffle=True)
        val = DataLoader(TensorDataset(x_val, y_val), batch_size=256)
        run.set_totals(steps_per_epoch=len(train))  # progress moves between epoch ends

        model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(),
                                    torch.nn.Linear(128, 10))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        accuracy = 0.0
        for epoch in range(args.epochs):
            run.stage("model_training")
            run.epoch_start(epoch)
            for xb, yb in train:
                loss = torch.nn.functional.cross_entropy(model(xb), yb)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                run.step(loss=loss.detach())  # a counter and a clock compare
            run.stage("validation")
            accuracy = evaluate(model, val)
            run.epoch_end(epoch, loss=loss.detach(), accuracy=accuracy,
                          metrics={"val_acc": accuracy})

        run.stage("finalization")
        size = sum(p.numel() * p.element_size() for p in model.parameters())
        run.complete(final_accuracy=accuracy, validation_score=accuracy, model_size=size)
    print(f"validation accuracy: {accuracy:.3f}")


if __name__ == "__main__":
    main()
