"""The demo's Lightning runs: a small MLP on the digits, and a probe that diverges.

Both use the public ``MLOpsCallback`` exactly as a user's script would; the demo adds nothing
to the callback. The probe's learning rate is far too high on purpose: its loss becomes
non-finite within a few steps, ``training_step`` raises, and the callback reports
``training_failed`` (``NUMERICAL_ERROR`` with suggestions) like it would for a real run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from mlops_hooks.cli.demo._data import Digits
from mlops_hooks.plugins.lightning import MLOpsCallback

__all__ = ["DigitsMLP", "Trained", "predictor", "probe", "train"]

CLASSES = 10


def quiet_lightning() -> None:
    """Keep Lightning's informational lines ("GPU available", tips) off the demo's screen."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning",
                 "lightning_fabric"):  # both flavours: the callback imports every installed one
        logging.getLogger(name).setLevel(logging.ERROR)


class DigitsMLP(L.LightningModule):
    """A multi-layer perceptron (LeakyReLU) for 8x8 digit images.

    Args:
        features: Input width (64 pixels).
        hidden: Widths of the hidden layers.
        lr: Learning rate of SGD with momentum.
    """

    def __init__(self, features: int, hidden: Sequence[int], lr: float) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = []
        width = features
        for size in hidden:
            layers += [torch.nn.Linear(width, size), torch.nn.LeakyReLU()]
            width = size
        layers.append(torch.nn.Linear(width, CLASSES))
        self.net = torch.nn.Sequential(*layers)
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        out: torch.Tensor = self.net(x)
        return out

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor],
                      batch_idx: int) -> torch.Tensor:
        """Cross-entropy; a non-finite loss stops the run (it would only produce NaNs)."""
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss is {loss.item()} at step {self.global_step}: training diverged with "
                f"learning rate {self.lr:g}")
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Validation loss and accuracy (``val_acc`` is what the callback reports)."""
        x, y = batch
        logits = self(x)
        self.log("val_loss", torch.nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(dim=1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """SGD with momentum."""
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


@dataclass(frozen=True)
class Trained:
    """A trained MLP and its accuracy on the test split."""

    model: DigitsMLP
    accuracy: float
    run_id: str | None


def _loaders(data: Digits, batch_size: int) -> tuple[DataLoader[Any], DataLoader[Any]]:
    train = TensorDataset(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train))
    test = TensorDataset(torch.from_numpy(data.x_test), torch.from_numpy(data.y_test))
    return (DataLoader(train, batch_size=batch_size, shuffle=True),
            DataLoader(test, batch_size=256))


def _trainer(epochs: int, callback: MLOpsCallback, **options: Any) -> L.Trainer:
    quiet_lightning()
    # A model this small gains nothing from intra-op threads, and their spin-waiting costs
    # ten times the CPU when anything else runs (the server, the dashboard's browser).
    torch.set_num_threads(1)
    callbacks: list[Any] = [callback]  # a Lightning Callback (typed as its implementation)
    return L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0,
                     callbacks=callbacks, **options)


def accuracy(model: DigitsMLP, x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> float:
    """Share of correctly classified rows."""
    model.eval()
    with torch.inference_mode():
        predicted = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float((predicted == y).mean())


def train(data: Digits, *, epochs: int, batch_size: int, hidden: Sequence[int],
          model_id: str, lr: float = 0.02, seed: int = 0) -> Trained:
    """Fit the MLP with ``MLOpsCallback`` streaming the run.

    Returns:
        The model and its test accuracy.
    """
    torch.manual_seed(seed)
    model = DigitsMLP(data.features, hidden, lr)
    callback = MLOpsCallback("Digits MLP", model_id=model_id)
    train_loader, test_loader = _loaders(data, batch_size)
    _trainer(epochs, callback).fit(model, train_loader, test_loader)
    run = callback.run
    return Trained(model, accuracy(model, data.x_test, data.y_test),
                   run.run_id if run is not None else None)


def probe(data: Digits, *, lr: float, epochs: int = 4, seed: int = 0) -> str | None:
    """Fit a two-layer MLP with a learning rate ``lr`` that is far too high, until it diverges.

    With ``lr`` around 0.5 and more, the loss becomes non-finite within a few dozen steps;
    the run is given ``epochs`` epochs for it.

    Returns:
        The error that ended the run, or ``None`` if it did not diverge.
    """
    torch.manual_seed(seed)
    model = DigitsMLP(data.features, (128, 128), lr)
    callback = MLOpsCallback(f"Digits MLP, learning-rate probe lr={lr:g}")
    train_loader, test_loader = _loaders(data, 32)
    try:
        _trainer(epochs, callback, limit_val_batches=0).fit(model, train_loader, test_loader)
    except FloatingPointError as exc:
        return str(exc)
    return None


def predictor(model: DigitsMLP) -> Callable[[np.ndarray[Any, Any]], int]:
    """A function that classifies one image (a row of 64 pixels), as a service would."""
    model.eval()

    def predict(features: np.ndarray[Any, Any]) -> int:
        with torch.inference_mode():
            logits = model(torch.from_numpy(np.asarray(features, dtype=np.float32))[None])
        return int(logits.argmax(dim=1).item())

    return predict
