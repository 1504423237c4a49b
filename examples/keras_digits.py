"""Keras 3: a dense network on scikit-learn's digits, live on the dashboard.

``MLOpsCallback`` is an ordinary ``keras.callbacks.Callback`` and works with every Keras 3
backend (JAX, TensorFlow, PyTorch). Used as a context manager it also reports failures that
happen outside the training step (the data pipeline, another callback).

Run a server first (``mlops-hooks serve``), then::

    KERAS_BACKEND=torch python examples/keras_digits.py --epochs 10
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # any installed backend works

import keras
from sklearn.datasets import load_digits

from mlops_hooks.plugins.keras import MLOpsCallback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(10, activation="softmax"),
    ], name="digits_dense")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    with MLOpsCallback("digits-dense (Keras example)", model_id="digits_dense_keras") as cb:
        history = model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size,
                            validation_split=0.2, callbacks=[cb], verbose=0)
    print(f"validation accuracy: {history.history['val_accuracy'][-1]:.3f}")


if __name__ == "__main__":
    main()
