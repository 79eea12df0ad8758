"""What the benchmark scripts share: where results go by default, and the machine's description.

Run a benchmark as ``python benchmarks/bench_<name>.py`` with the plugin installed (``pip install -e .``):
Python puts this folder on the import path, so ``from _common import ...`` needs no path edits.

Results go to ``$VLD_BENCH_OUT`` when set, else ``~/.cache/vld_plugin/benchmarks``: outside the
checkout, so running a benchmark leaves it clean. The recorded results the README cites live in
``benchmarks/results/``; pass ``--out benchmarks/results`` to update them.
"""
import os
import platform

import numpy
import torch

OUT_ENV = "VLD_BENCH_OUT"
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")  # the recorded results


def default_out():
    """The default results folder: ``$VLD_BENCH_OUT``, else ``~/.cache/vld_plugin/benchmarks``."""
    return os.environ.get(OUT_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "vld_plugin", "benchmarks")


def add_out_argument(parser):
    """Add ``--out FOLDER`` (default: :func:`default_out`) to an argparse parser."""
    parser.add_argument("--out", default=default_out(),
                        help=f"results folder (default: ${OUT_ENV} or ~/.cache/vld_plugin/benchmarks, outside the "
                             "checkout; benchmarks/results holds the recorded results)")


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (else what ``platform`` says)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine(device=None):
    """The machine a benchmark ran on: CPU model and cores, Python, torch and the platform, plus
    the GPU and CUDA version when ``device`` is a CUDA device."""
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": numpy.__version__, "platform": platform.platform()}
    if device is not None and torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info
