"""Cross-modal re-id evaluation: exact, vectorised ranking, protocols, reports, pictures.

``evaluate_rank`` ranks a distance matrix (torchreid's arguments; CMC, mAP, mINP);
``evaluate_protocols`` evaluates a dataset's modality protocols from one feature pass;
``report`` prints and records them (``results_table``, ``save_results_json``, ``report_results``);
``vld_plugin.evaluation.visualize`` draws the figures (it needs matplotlib: ``pip install
vld_plugin[plots]``, so it is not imported here).
"""
from ..errors import EvaluationError
from .distance import compute_distance, rerank_distance
from .protocols import evaluate_protocols, select_protocol
from .rank import evaluate_rank
from .report import report_results, report_selection, results_table, save_results_json

__all__ = [
    "EvaluationError", "evaluate_rank", "compute_distance", "rerank_distance", "evaluate_protocols",
    "select_protocol", "results_table", "save_results_json", "report_results", "report_selection",
]
