"""PyTorch Lightning: a small MLP on scikit-learn's digits, live on the dashboard.

One line does it: ``callbacks=[MLOpsCallback(...)]``. Stages, whole-run progress, loss,
validation accuracy, ETA, completion (or failure, with an error code and suggestions) stream to
the server at ``MLOPS_HOOKS_URL`` (default ``ws://127.0.0.1:8001/ws``).

Run a server first (``mlops-hooks serve``, or ``mlops-hooks demo --no-train``), then::

    python examples/lightning_digits.py --epochs 10
"""

from __future__ import annotations

import argparse

import lightning.pytorch as L
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

from mlops_hooks.plugins.lightning import MLOpsCallback


class DigitsMLP(L.LightningModule):
    def __init__(self, hidden: int = 128, lr: float = 0.05) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        logits = self(x)
        self.log("val_loss", torch.nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(dim=1) == y).float().mean())  # -> final_accuracy

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def loaders(batch_size: int) -> tuple[DataLoader, DataLoader]:
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y), test_size=0.2,
        stratify=y, random_state=0)
    return (DataLoader(TensorDataset(x_train, y_train), batch_size=batch_size, shuffle=True),
            DataLoader(TensorDataset(x_val, y_val), batch_size=256))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    torch.manual_seed(0)
    train, val = loaders(args.batch_size)
    trainer = L.Trainer(
        max_epochs=args.epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
        callbacks=[MLOpsCallback("digits-mlp (Lightning example)", model_id="digits_mlp_pl")])
    trainer.fit(DigitsMLP(), train, val)
    print(f"validation accuracy: {float(trainer.callback_metrics['val_acc']):.3f}")


if __name__ == "__main__":
    main()
