"""Tiny LightningModules on scikit-learn's digits, importable by spawned DDP workers."""

from __future__ import annotations

import os
import signal

import lightning.pytorch
import pytorch_lightning
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def digits_loaders(batch_size: int = 64, n_train: int = 640, n_val: int = 256):
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    train = TensorDataset(x[:n_train], y[:n_train])
    val = TensorDataset(x[n_train:n_train + n_val], y[n_train:n_train + n_val])
    return (DataLoader(train, batch_size=batch_size, shuffle=True, num_workers=0),
            DataLoader(val, batch_size=batch_size, num_workers=0))


def _build(pl):
    class DigitsMLP(pl.LightningModule):
        def __init__(self, fail_at_epoch: int | None = None, fail_with: str = "error",
                     lr: float = 0.05) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
            self.fail_at_epoch = fail_at_epoch
            self.fail_with = fail_with
            self.lr = lr
            self.error = RuntimeError("boom in epoch 2")

        def training_step(self, batch, batch_idx):
            if self.current_epoch == self.fail_at_epoch and batch_idx == 3:
                if self.fail_with == "sigterm":
                    os.kill(os.getpid(), signal.SIGTERM)
                elif self.fail_with == "interrupt":
                    raise KeyboardInterrupt
                else:
                    raise self.error
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            logits = self.net(x)
            self.log("val_loss", nn.functional.cross_entropy(logits, y))
            self.log("val_acc", (logits.argmax(1) == y).float().mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.lr)

    return DigitsMLP


def _named(cls, name: str):
    cls.__name__ = cls.__qualname__ = name  # picklable by reference for spawned workers
    return cls


#: The same module for each Lightning flavour (both are installed in the dev environment).
DigitsMLP = _named(_build(lightning.pytorch), "DigitsMLP")
ClassicDigitsMLP = _named(_build(pytorch_lightning), "ClassicDigitsMLP")
