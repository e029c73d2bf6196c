"""Explanations of recommendations: LIME on item texts, SHAP on modalities, and their sanity checks.

* :mod:`~vidrec_lab.explain.scorer`: :class:`FusedContentRecommender`, the
  multimodal content model the notebook explains;
* :mod:`~vidrec_lab.explain.lime_text`: LIME word weights for a score or a
  class probability, with a CJK-aware tokenizer;
* :mod:`~vidrec_lab.explain.shap_fusion`: SHAP over modalities (fusion
  masks), text fields, feature groups and classifier tokens;
* :mod:`~vidrec_lab.explain.checks`: additivity, deletion and stability checks.

Names are imported from the submodules on first use, so ``import
vidrec_lab.explain`` does not load ``shap``, ``lime`` or PyTorch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "scorer": ("ClassifierProba", "FusedContentRecommender", "FusedSetup", "build_fused_recommender", "reweighted_fusion"),
    "lime_text": (
        "TextExplanation",
        "cjk_tokenize",
        "explain_recommendation_text",
        "explain_text",
        "explain_text_classifier",
        "plot_word_weights",
        "remove_tokens",
        "text_tokens",
    ),
    "shap_fusion": (
        "ShapAttribution",
        "attribution_table",
        "explain_classifier_tokens",
        "explain_feature_vector",
        "explain_modalities",
        "explain_recommendations",
        "explain_text_fields",
        "mean_attribution",
        "plot_attribution_summary",
        "plot_attribution_waterfall",
        "plot_token_attributions",
        "stack_attributions",
        "token_attributions",
    ),
    "checks": (
        "additivity_check",
        "checks_table",
        "deletion_test",
        "deletion_test_recommendations",
        "seed_stability",
        "stability_across_seeds",
        "stability_recommendations",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted([*_MODULE_OF, "explain_sizes"])


def explain_sizes(profile) -> dict:
    """Return the sample sizes notebook 07 uses under a run profile.

    The smoke profile keeps every explanation small, so the notebook runs in
    seconds. The others use 1000 LIME samples and 30 pairs in the deletion test.

    Args:
        profile (str or Profile): ``smoke``, ``fast`` or ``full``.

    Returns:
        dict: ``lime_samples`` (perturbed texts per LIME explanation),
        ``deletion_pairs`` and ``stability_pairs`` ((user, item) pairs in the
        two LIME checks), ``stability_seeds``, ``summary_users`` (users whose
        top-K lists enter the SHAP summary), ``token_texts`` and
        ``token_evals`` (texts explained by token SHAP, model calls per text).
    """
    from vidrec_lab.config import get_profile

    smoke = get_profile(profile).name == "smoke"
    return {
        "lime_samples": 50 if smoke else 1000,
        "deletion_pairs": 3 if smoke else 30,
        "stability_pairs": 1 if smoke else 5,
        "stability_seeds": 2 if smoke else 3,
        "summary_users": 5 if smoke else 50,
        "token_texts": 1 if smoke else 3,
        "token_evals": 20 if smoke else 300,
    }


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'vidrec_lab.explain' has no attribute {name!r}")
    return getattr(importlib.import_module(f"vidrec_lab.explain.{module}"), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
