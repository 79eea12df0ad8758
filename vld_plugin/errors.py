"""The exceptions that mean bad input rather than a bug: the CLI prints their one-line message."""
from .checkpoint import CheckpointError
from .config import ConfigError
from .data.base import DatasetFormatError, DatasetNotFoundError, ImageReadError
from .data.validation import ValidationSplitError
from .engine import EngineConfigError, NonFiniteLossError
from .evaluation import EvaluationError
from .models import PretrainedWeightsError
from .optim import OptimConfigError


DEMO_HINT = (
    "datasets/README.md says how to obtain and place the data; "
    "or try the synthetic demo: python projects/VLD/main.py --config-file configs/vld_demo.yaml"
)

# exit code 2: the command or its configuration is wrong
USAGE_ERRORS = (ConfigError, DatasetNotFoundError, ValidationSplitError)
# exit code 1: the inputs (files, checkpoints, data) or the run itself went wrong
USER_ERRORS = (CheckpointError, DatasetFormatError, ImageReadError, EngineConfigError, NonFiniteLossError,
               EvaluationError, PretrainedWeightsError, OptimConfigError)
