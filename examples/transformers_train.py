"""Hugging Face Transformers: a tiny BERT classifier trained by ``Trainer``, live on the dashboard.

The model is built from a configuration with random weights and the data is generated, so the
example runs offline (nothing is downloaded). ``MLOpsCallback`` is an ordinary
``TrainerCallback``; used as a context manager it also reports failures outside the training
step (the data loader, another callback). ``--report-to`` shows the other way to enable it:
``TrainingArguments(report_to=["mlops_hooks"])`` once ``mlops_hooks.plugins.transformers`` is
imported.

Run a server first (``mlops-hooks serve``), then::

    python examples/transformers_train.py --epochs 3
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from mlops_hooks.plugins.transformers import MLOpsCallback

VOCAB, LENGTH = 64, 12


class Tokens(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Random token sequences; label 1 ones repeat token 1 in their first half."""

    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(2, VOCAB, (size, LENGTH), generator=generator)
        self.labels = torch.randint(0, 2, (size,), generator=generator)
        self.ids[self.labels == 1, 1:LENGTH // 2] = 1
        self.ids[:, 0] = 0  # the [CLS] position

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.labels[index]}


def accuracy(prediction: object) -> dict[str, float]:
    logits, labels = prediction.predictions, prediction.label_ids  # type: ignore[attr-defined]
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--report-to", action="store_true",
                        help="enable it with report_to=['mlops_hooks'] instead of callbacks=")
    args = parser.parse_args()

    torch.manual_seed(0)
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=LENGTH, num_labels=2)
    model = BertForSequenceClassification(config)  # random weights: nothing to download
    with tempfile.TemporaryDirectory() as output_dir:
        training = TrainingArguments(
            output_dir=output_dir, num_train_epochs=args.epochs, learning_rate=3e-3,
            per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=2,
            warmup_steps=5, weight_decay=0.01, logging_steps=5, eval_strategy="epoch",
            save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0,
            report_to=["mlops_hooks"] if args.report_to else [])
        callback = MLOpsCallback("bert-tiny (Transformers example)", model_id="bert_tiny_hf")
        trainer = Trainer(model=model, args=training, train_dataset=Tokens(512, seed=1),
                          eval_dataset=Tokens(128, seed=2), compute_metrics=accuracy,
                          callbacks=[] if args.report_to else [callback])
        with callback:
            trainer.train()
        print(f"validation accuracy {trainer.evaluate()['eval_accuracy']:.3f}")


if __name__ == "__main__":
    main()
