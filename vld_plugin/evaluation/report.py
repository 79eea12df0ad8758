"""Reporting evaluation results: text tables, JSON files and TensorBoard scalars.

Results are ``{dataset: {protocol: {rank1, rank5, rank10, rank20, mAP, mINP}}}`` with fractions.
"""
import json
import math
import os

from tabulate import tabulate

from ..errors import OutputError

METRIC_KEYS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")
SELECTED_KEY = "selected_by_validation"  # the results.json entry of the epoch chosen on validation


def results_table(results):
    """``{dataset: {protocol: metrics}}`` as a text table in percent (dataset, protocol, R1..mINP)."""
    rows = []
    for dataset, protocols in results.items():
        for name, metrics in protocols.items():
            values = [metrics.get(k, float("nan")) for k in METRIC_KEYS]
            rows.append([dataset, name] + ["n/a" if math.isnan(v) else f"{100 * v:.2f}" for v in values])
    return tabulate(rows, headers=["dataset", "protocol", "R1", "R5", "R10", "R20", "mAP", "mINP"],
                    disable_numparse=True)


def _json_ready(value):
    """``value`` with NaN floats (at any depth of dicts) replaced by None."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def save_results_json(results, path):
    """Write ``{dataset: {protocol: metrics}}`` (other JSON-ready entries may sit beside) as JSON,
    atomically (fractions; NaN written as null)."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, "w") as f:
            json.dump(_json_ready(results), f, indent=2)
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise OutputError(f"cannot write {path}: {e.strerror or e}; free some space or set data.save_dir "
                          "to another folder") from None
    return path


def report_results(results, save_dir, epoch=None, validation=None, selection=None, writer=None):
    """Print the results of an evaluation (and of its validation) and record them.

    Writes ``results.json`` (with the validation-selected epoch's entry ``selection`` under
    ``selected_by_validation`` when there is one), ``results_epochNNN.json`` when ``epoch`` is
    given (None: weights not trained in this run), and ``Test/<dataset>/<protocol>/<metric>``
    scalars to a TensorBoard ``writer``.
    """
    if validation is not None:
        print(f"validation after epoch {epoch} (%)\n" + results_table({"validation": validation}), flush=True)
    title = f"results after epoch {epoch} (%)" if epoch else "results (%)"
    print(title + "\n" + results_table(results), flush=True)
    summary = dict(results)
    if selection is not None:
        summary[SELECTED_KEY] = selection
    save_results_json(summary, os.path.join(save_dir, "results.json"))
    this_epoch = {**results, **({"validation": validation} if validation is not None else {})}
    if epoch:
        save_results_json(this_epoch, os.path.join(save_dir, f"results_epoch{epoch:03d}.json"))
    if writer is not None:
        for name, per_protocol in this_epoch.items():
            for protocol, metrics in per_protocol.items():
                for key, value in metrics.items():
                    writer.add_scalar(f"Test/{name}/{protocol}/{key}", float(value), epoch or 0)


def report_selection(selection, checkpoint_path):
    """Print the epoch chosen on validation and its test results."""
    print(f"selected by validation: epoch {selection['epoch']} (mean validation mAP "
          f"{100 * selection['val_mAP']:.2f}%), weights in {checkpoint_path}; its test results (%)\n"
          + results_table(selection["test"]), flush=True)
