"""Cross-modal re-id evaluation: exact, vectorised ranking, protocols, tables, pictures.

``evaluate_rank`` ranks a distance matrix (torchreid's arguments; CMC, mAP, mINP);
``evaluate_protocols`` evaluates a dataset's modality protocols from one feature pass;
``results_table`` / ``save_results_json`` report them; ``vld_plugin.evaluation.visualize`` draws
the figures (it needs matplotlib: ``pip install vld_plugin[plots]``, so it is not imported here).
"""
from ..errors import EvaluationError
from .distance import compute_distance, rerank_distance
from .protocols import evaluate_protocols, results_table, save_results_json, select_protocol
from .rank import evaluate_rank

__all__ = [
    "EvaluationError", "evaluate_rank", "compute_distance", "rerank_distance", "evaluate_protocols",
    "select_protocol", "results_table", "save_results_json"
]
