"""Every error that means bad input or a fault rather than a bug, each with the CLI's exit code.

This module imports nothing of the package, so any module can raise from it. The CLI
(``launch.main``) prints ``one_line(error)`` and exits with ``error.exit_code``; any other
exception is a bug and keeps its traceback. Each class also derives from the builtin a library
caller would expect (``ValueError``, ``FileNotFoundError``, ...).
"""


class VLDError(Exception):
    """Base class: the message is one line saying what went wrong, where, and how to fix it."""

    exit_code = 1


class UsageError(VLDError):
    """The command or its configuration is wrong (exit code 2)."""

    exit_code = 2


class ConfigError(UsageError, ValueError):
    """A config file, key or value is wrong."""


class ValidationSplitError(ConfigError):
    """``data.val_ids`` does not fit the training set."""


class EngineConfigError(ConfigError):
    """An engine or sampler setting does not fit the model or the data (e.g. more ids per batch than exist)."""


class OptimConfigError(ConfigError):
    """An optimizer or scheduler setting is invalid."""


class AblationError(UsageError, ValueError):
    """A wrong ablation table or row name, or a run's unusable results.json."""


class FeatureInputError(UsageError, ValueError):
    """A FeatureExtractor argument (tracklets, device) is not in a supported form."""


class MissingDependencyError(UsageError, ImportError):
    """A package the asked-for feature needs is not installed; the message says what to install."""


class DatasetNotFoundError(UsageError, FileNotFoundError):
    """A dataset root or index file is missing; the message says where it was looked for."""


class DataError(VLDError, ValueError):
    """Data on disk is damaged or inconsistent (exit code 1)."""


class DatasetFormatError(DataError):
    """An index file is malformed or inconsistent; the message names the file and line."""


class ImageReadError(DataError):
    """A frame is missing, truncated or cannot be decoded; the message names the file."""


class CheckpointError(VLDError, RuntimeError):
    """A checkpoint is missing, damaged or does not fit the model or the run."""


class PretrainedWeightsError(VLDError, RuntimeError):
    """Pretrained weights cannot be found, downloaded or loaded."""


class EvaluationError(VLDError, ValueError):
    """Bad input to the evaluation (no query with a match, non-finite distances, ...)."""


class NonFiniteLossError(VLDError, RuntimeError):
    """The training loss became NaN or infinite; training stopped before the update."""


class ExportError(VLDError, RuntimeError):
    """An exported model does not reproduce the PyTorch features (ONNX Runtime check), or cannot be read."""


class OutputError(VLDError, OSError):
    """The run cannot write its outputs (save dir is a file, unwritable, disk full)."""


class RunInterrupted(VLDError):
    """SIGTERM stopped the run (exit code 128 + 15); the CLI's line says how to resume."""

    exit_code = 143


def one_line(error):
    """The user-facing line of ``error``; for an error re-raised from a DataLoader worker, the
    original message without the worker's traceback."""
    text = str(error)
    if "Original Traceback" in text:  # torch's ExceptionWrapper: "<where>\nOriginal Traceback ...\nmod.Cls: msg"
        last = text.rstrip().splitlines()[-1]
        name = type(error).__name__
        head, sep, rest = last.partition(": ")
        text = rest if sep and head.rsplit(".", 1)[-1] == name else last
    return " ".join(text.split("\n")).strip()
