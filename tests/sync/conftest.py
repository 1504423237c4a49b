from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

from tests.recorder import pm, recorder

__all__ = ["pm", "recorder"]
