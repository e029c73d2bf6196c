"""Offline evaluation: ranking and beyond-accuracy metrics, one protocol, significance tests, simulated A/B tests.

* :mod:`~vidrec_lab.evaluation.metrics`: precision, recall, F1, HitRate,
  NDCG, MRR and MAP at K; coverage, Gini of exposure, novelty, intra-list
  diversity and popularity bias.
* :mod:`~vidrec_lab.evaluation.protocol`: :func:`evaluate`, the one protocol
  every notebook uses, and its :class:`EvaluationResult`.
* :mod:`~vidrec_lab.evaluation.significance`: bootstrap intervals, paired
  tests and multiple-comparison corrections.
* :mod:`~vidrec_lab.evaluation.abtest`: a position-biased click simulator for
  A/B tests and team-draft interleaving, and sample-size planning.
"""

from vidrec_lab.evaluation.abtest import (
    ABTestSimulator,
    AffinityRelevance,
    ClickModel,
    HeldOutRelevance,
    plot_power_curve,
    power_curve,
    required_sample_size,
    simulate_ab_test,
    simulate_interleaving,
    team_draft_interleave,
)
from vidrec_lab.evaluation.metrics import (
    BEYOND_ACCURACY_METRICS,
    RANKING_METRICS,
    catalog_coverage,
    f1_at_k,
    gini_exposure,
    hit_rate_at_k,
    intra_list_diversity,
    item_probability,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    novelty,
    popularity_bias,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)
from vidrec_lab.evaluation.protocol import EvaluationResult, IncomparableResultsError, evaluate
from vidrec_lab.evaluation.significance import (
    adjust_p_values,
    bootstrap_ci,
    compare_models,
    paired_difference_ci,
    paired_test,
)

__all__ = [
    "ABTestSimulator",
    "AffinityRelevance",
    "ClickModel",
    "HeldOutRelevance",
    "plot_power_curve",
    "power_curve",
    "required_sample_size",
    "simulate_ab_test",
    "simulate_interleaving",
    "team_draft_interleave",
    "BEYOND_ACCURACY_METRICS",
    "RANKING_METRICS",
    "EvaluationResult",
    "IncomparableResultsError",
    "adjust_p_values",
    "bootstrap_ci",
    "catalog_coverage",
    "compare_models",
    "evaluate",
    "f1_at_k",
    "gini_exposure",
    "hit_rate_at_k",
    "intra_list_diversity",
    "item_probability",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "novelty",
    "paired_difference_ci",
    "paired_test",
    "popularity_bias",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
]
