"""Cross-modal re-id evaluation: exact, vectorised ranking, protocols, tables, pictures.

``evaluate_rank`` ranks a distance matrix (torchreid's arguments; CMC, mAP, mINP);
``evaluate_protocols`` evaluates a dataset's modality protocols from one feature pass;
``results_table`` / ``save_results_json`` report them; ``visualize`` draws the figures.
"""
from .distance import compute_distance, rerank_distance
from .protocols import evaluate_protocols, results_table, save_results_json, select_protocol
from .rank import EvaluationError, evaluate_rank
from .visualize import plot_distance_histogram, plot_ranked_retrieval, visualize_protocols

__all__ = [
    "EvaluationError", "evaluate_rank", "compute_distance", "rerank_distance", "evaluate_protocols",
    "select_protocol", "results_table", "save_results_json", "plot_ranked_retrieval",
    "plot_distance_histogram", "visualize_protocols",
]
