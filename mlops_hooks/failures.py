"""Map an exception to the spec's ``error_code`` and concrete ``suggestions``.

The table is ordered: the first rule that matches wins. Rules match on exception type names
(so framework exceptions are recognised without importing the framework) and on message text.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass

__all__ = ["Failure", "classify"]


@dataclass(frozen=True)
class Failure:
    """What a failed run reports: an error code and what to try next."""

    error_code: str
    suggestions: tuple[str, ...]


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


_MEMORY = Failure(
    "MEMORY_ERROR",
    (
        "Reduce batch size",
        "Use smaller dataset",
        "Use a smaller model or mixed precision",
        "Enable gradient accumulation instead of large batches",
    ),
)

# (type names, message patterns (regular expressions on the lower-cased message), failure)
_RULES: tuple[tuple[frozenset[str], tuple[str, ...], Failure], ...] = (
    (frozenset({"KeyboardInterrupt"}), (), Failure(
        "INTERRUPTED", ("The run was interrupted by the user (Ctrl-C)",
                        "Resume from the last checkpoint to continue"))),
    (frozenset({"SIGTERMException"}), (), Failure(
        "TERMINATED", ("The process received SIGTERM (pre-emption or a job limit)",
                       "Resume from the last checkpoint", "Check the scheduler's time limit"))),
    (frozenset({"SystemExit"}), (), Failure(
        "TERMINATED", ("The training process exited before the run finished",
                       "Check what called sys.exit()"))),
    (frozenset({"MemoryError", "OutOfMemoryError"}), (), _MEMORY),
    # scikit-learn's parameter validation; its messages quote ranges such as "(0.0, inf]".
    (frozenset({"InvalidParameterError"}), (), Failure(
        "INVALID_PARAMETER", ("Check the parameter named in the error against its valid range",
                              "Fix the estimator's constructor arguments or the search grid"))),
    (frozenset(), ("out of memory", "cuda oom", "cannot allocate memory"), _MEMORY),
    (frozenset(), ("nccl", "gloo", "process group"), Failure(
        "DISTRIBUTED_ERROR", ("Check that every rank can reach MASTER_ADDR:MASTER_PORT",
                              "Make sure all ranks run the same code and data sizes"))),
    (frozenset(), ("cuda error", "cudnn", "device-side assert"), Failure(
        "GPU_ERROR", ("Run on CPU once to get a clearer error message",
                      "Check label values against the number of classes",
                      "Update the GPU driver and CUDA runtime"))),
    (frozenset(), ("shapes cannot be multiplied", "size mismatch", "shape mismatch",
                   "must match the size", "expected input batch_size"), Failure(
        "SHAPE_MISMATCH", ("Check the input feature count against the model's first layer",
                           "Print tensor shapes at the failing layer",
                           "Check that labels and predictions have the same batch size"))),
    (frozenset(), (r"\bnan\b", r"\binf\b", "non-finite"), Failure(
        "NUMERICAL_ERROR", ("Lower the learning rate", "Enable gradient clipping",
                            "Check inputs for NaN or infinite values"))),
    (frozenset({"FloatingPointError", "ZeroDivisionError", "OverflowError"}), (), Failure(
        "NUMERICAL_ERROR", ("Lower the learning rate", "Enable gradient clipping",
                            "Normalise the input features"))),
    (frozenset({"FileNotFoundError"}), (), Failure(
        "DATA_NOT_FOUND", ("Check the data path and the working directory",
                           "Make sure the data set was downloaded or mounted"))),
    (frozenset({"PermissionError"}), (), Failure(
        "PERMISSION_ERROR", ("Check file permissions of the data and output directories",
                             "Write checkpoints to a directory you own"))),
    (frozenset({"TimeoutError"}), (), Failure(
        "TIMEOUT", ("Increase the timeout", "Check the speed of the data source"))),
    (frozenset({"ConnectionError"}), (), Failure(
        "NETWORK_ERROR", ("Check network connectivity to the data source",
                          "Retry: the failure may be transient"))),
    (frozenset({"ImportError", "ModuleNotFoundError"}), (), Failure(
        "DEPENDENCY_ERROR", ("Install the missing package in the training environment",
                             "Check package versions against the project's requirements"))),
    (frozenset({"KeyError", "IndexError"}), (), Failure(
        "DATA_ERROR", ("Check column names and label indices in the data set",
                       "Check the number of classes against the labels"))),
    (frozenset({"ValueError"}), (), Failure(
        "INVALID_VALUE", ("Check input data types and value ranges",
                          "Validate the data set before training"))),
    (frozenset({"TypeError"}), (), Failure(
        "TYPE_ERROR", ("Check the types of the arguments passed to the model and loss",
                       "Check that the data loader yields what training_step expects"))),
    (frozenset({"AssertionError"}), (), Failure(
        "ASSERTION_FAILED", ("Check the assertion in the traceback and the data it guards",))),
    (frozenset({"NotImplementedError"}), (), Failure(
        "NOT_IMPLEMENTED", ("Implement the missing method named in the traceback",))),
    (frozenset({"RecursionError"}), (), Failure(
        "RECURSION_ERROR", ("Look for a method that calls itself in the traceback",))),
)

_DISK_FULL = Failure("DISK_FULL", ("Free disk space or write checkpoints elsewhere",
                                   "Keep fewer checkpoints (save_top_k)"))
_UNKNOWN = Failure("TRAINING_ERROR", ("Check the traceback in the training logs",
                                      "Retry the run; report the error if it persists"))


def classify(exc: BaseException) -> Failure:
    """Return the :class:`Failure` (error code and suggestions) for ``exc``.

    Example:
        >>> classify(MemoryError()).error_code
        'MEMORY_ERROR'
        >>> classify(KeyboardInterrupt()).error_code
        'INTERRUPTED'
    """
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return _DISK_FULL
    names = _names(exc)
    message = str(exc).lower()
    for types, fragments, failure in _RULES:
        if types and not types & names:
            continue
        if fragments and not any(re.search(f, message) for f in fragments):
            continue
        return failure
    return _UNKNOWN
