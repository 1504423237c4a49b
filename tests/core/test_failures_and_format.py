from __future__ import annotations

import errno

import pytest

from mlops_hooks.events import decode
from mlops_hooks.failures import classify
from mlops_hooks.formatting import format_bytes, format_duration, format_rate, iso_utc, to_float


class OutOfMemoryError(RuntimeError):
    """Shaped like torch.cuda.OutOfMemoryError."""


class SIGTERMException(SystemExit):
    """Shaped like Lightning's SIGTERMException."""


class InvalidParameterError(ValueError, TypeError):
    """Shaped like scikit-learn's InvalidParameterError."""


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (MemoryError(), "MEMORY_ERROR"),
        (OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "MEMORY_ERROR"),
        (RuntimeError("CUDA out of memory"), "MEMORY_ERROR"),
        (KeyboardInterrupt(), "INTERRUPTED"),
        (SIGTERMException(), "TERMINATED"),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 5x2)"),
         "SHAPE_MISMATCH"),
        (ValueError("loss is nan"), "NUMERICAL_ERROR"),
        (ValueError("bad maintenance window"), "INVALID_VALUE"),
        (FileNotFoundError("data.csv"), "DATA_NOT_FOUND"),
        (OSError(errno.ENOSPC, "No space left on device"), "DISK_FULL"),
        (ConnectionResetError(), "NETWORK_ERROR"),
        (ModuleNotFoundError("No module named 'x'"), "DEPENDENCY_ERROR"),
        (KeyError("label"), "DATA_ERROR"),
        (RuntimeError("something odd"), "TRAINING_ERROR"),
        (InvalidParameterError("The 'C' parameter of LogisticRegression must be a float in the "
                               "range (0.0, inf]. Got -1.0 instead."), "INVALID_PARAMETER"),
    ],
)
def test_classify(exc, code):
    failure = classify(exc)
    assert failure.error_code == code
    assert failure.suggestions and all(isinstance(s, str) and s for s in failure.suggestions)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.42, "0.4s"), (9.96, "10.0s"), (23, "23s"), (263.4, "4m 23s"), (3725, "1h 2m 5s")],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_format_bytes_and_rate():
    assert format_bytes(512) == "512B"
    assert format_bytes(2_411_724) == "2.3MB"
    assert format_bytes(2.5 * 1024**3) == "2.5GB"
    assert format_rate(2.1 * 1024**2) == "2.1 MB/s"
    with pytest.raises(ValueError, match="size must be a finite number"):
        format_bytes(-1)
    with pytest.raises(ValueError, match="duration must be a finite number"):
        format_duration(float("inf"))


def test_iso_utc_is_accepted_by_the_events():
    stamp = iso_utc(0)
    assert stamp == "1970-01-01T00:00:00.000Z"
    assert decode(f'{{"type":"prediction_volume","total_predictions":1,"timestamp":"{stamp}"}}')


def test_to_float():
    assert to_float(None) is None and to_float("x") is None and to_float(float("inf")) is None
    assert to_float(3) == 3.0
