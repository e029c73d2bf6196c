"""Tests for vidrec_lab.explain.checks: additivity, deletion test and seed stability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from explain_toys import BagOfWordsEncoder, topic_catalog, vocabulary, weighted_fusion
from vidrec_lab.constants import COL_ITEM, COL_TITLE
from vidrec_lab.explain.checks import (
    additivity_check,
    checks_table,
    deletion_test,
    deletion_test_recommendations,
    seed_stability,
    stability_across_seeds,
    stability_recommendations,
)
from vidrec_lab.explain.lime_text import TextExplanation, explain_text
from vidrec_lab.explain.scorer import FusedContentRecommender
from vidrec_lab.explain.shap_fusion import ShapAttribution, explain_modalities


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _score(texts):
    """good +2, great +1, bad -1."""
    weights = {"good": 2.0, "great": 1.0, "bad": -1.0}
    return np.array([sum(weights.get(word, 0.0) for word in set(t.split())) for t in texts])


def _explanation(text: str, weights: dict[str, float], *, seed: int = 0, context: dict | None = None) -> TextExplanation:
    table = pd.DataFrame({"word": list(weights), "weight": list(weights.values())})
    return TextExplanation(
        text=text, weights=table, output=0.0, intercept=0.0, local_prediction=0.0, r2=1.0, label=None,
        tokenizer="auto", num_samples=0, unique_texts=0, seed=seed, seconds=0.0, context=dict(context or {}),
    )


def _attribution(values, base, output, context=None) -> ShapAttribution:
    return ShapAttribution(
        features=[f"f{i}" for i in range(len(values))], values=np.array(values, dtype=float), base_value=base,
        output=output, data=np.ones(len(values)), kind="modality", context=context or {},
    )


# --- additivity -----------------------------------------------------------------


def test_additivity_exact_and_off():
    result = additivity_check([_attribution([0.2, 0.3], 0.1, 0.6, {"item_id": "a"}), _attribution([0.2, 0.3], 0.1, 0.6006, {"item_id": "b"})])
    assert result.table["abs_error"].tolist() == pytest.approx([0.0, 0.0006], abs=1e-12)
    assert result.max_rel_error == pytest.approx(0.0006 / 0.6006)
    assert not result.passed
    assert result.table["item_id"].tolist() == ["a", "b"]
    assert additivity_check([_attribution([0.2, 0.3], 0.1, 0.6)]).passed


def test_additivity_zero_output_floor():
    result = additivity_check([_attribution([1e-9], 0.0, 0.0)])
    assert result.max_rel_error == pytest.approx(1e-9 / 1e-8)


def test_additivity_on_fused_model():
    items, interactions, features, _, _ = topic_catalog()
    model = FusedContentRecommender(weighted_fusion({"signal": 3, "noise": 8}), features, item_ids=items[COL_ITEM].tolist()).fit(interactions, items)
    recs = model.recommend(["u00", "u11", "u22"], k=3)
    result = additivity_check([explain_modalities(model, u, i) for u, i in zip(recs["user_id"], recs["item_id"])], tolerance=1e-4)
    assert result.passed
    assert result.max_rel_error < 1e-5
    assert result.summary()["statistic"] == "max relative error"


def test_additivity_needs_input():
    with pytest.raises(ValueError, match="additivity_check: no attributions given"):
        additivity_check([])


# --- deletion test --------------------------------------------------------------


def test_deletion_faithful_and_inverted_explanations():
    text = "a good movie not bad great"
    faithful = _explanation(text, {"good": 2.0, "great": 1.0, "bad": -1.0, "a": 0.0, "movie": 0.0, "not": 0.0}, context={"case": "faithful"})
    inverted = _explanation(text, {"bad": 5.0, "a": 4.0, "good": -3.0, "great": -2.0, "movie": 0.0, "not": 0.0}, context={"case": "inverted"})
    result = deletion_test([(_score, faithful), (_score, inverted)], k=1, n_random=10, seed=0)
    table = result.table.set_index("case")
    assert table.loc["faithful", "drop_top"] == pytest.approx(2.0)
    assert table.loc["inverted", "drop_top"] == pytest.approx(-1.0)
    assert table.loc["faithful", "passed"]
    assert not table.loc["inverted", "passed"]
    assert -1.0 <= table.loc["faithful", "drop_random"] <= 2.0
    assert result.pass_rate == 0.5


def test_deletion_random_drop_is_mean_over_draws():
    text = "good bad"
    explanation = _explanation(text, {"good": 1.0, "bad": 0.0})
    result = deletion_test([(_score, explanation)], k=1, n_random=4000, seed=0)
    # One of the two words at random: drop 2 (good) or -1 (bad), mean 0.5.
    assert result.table["drop_random"].iloc[0] == pytest.approx(0.5, abs=0.1)  # 4 standard errors


def test_deletion_keeps_one_word_and_skips_single_words():
    cases = [(_score, _explanation("good great", {"good": 2.0, "great": 1.0})), (_score, _explanation("good", {"good": 2.0}))]
    result = deletion_test(cases, k=5)
    assert result.table["k"].tolist() == [1, 0]
    assert result.table["passed"].iloc[1] is None
    assert result.pass_rate == 1.0
    assert result.summary()["n"] == 1


def test_deletion_on_lime_explanations_passes():
    explanation = explain_text(_score, "a good movie not bad great", num_samples=500, seed=0)
    result = deletion_test([(_score, explanation)], k=2)
    assert result.table["drop_top"].iloc[0] == pytest.approx(3.0)  # good + great removed
    assert result.pass_rate == 1.0


def test_deletion_bad_arguments():
    with pytest.raises(ValueError, match="k and n_random must be positive; got k=0, n_random=10"):
        deletion_test([], k=0)


# --- stability ------------------------------------------------------------------


def test_seed_stability_hand_computed():
    a = _explanation("x y z", {"x": 1.0, "y": 2.0, "z": 3.0}, seed=0)
    b = _explanation("x y z", {"x": 1.0, "y": 3.0, "z": 2.0}, seed=1)
    c = _explanation("x y z", {"x": 10.0, "y": 20.0}, seed=2)
    result = seed_stability([a, b, c])
    table = result.table.set_index(["seed_a", "seed_b"])
    assert table.loc[(0, 1), "spearman"] == pytest.approx(0.5)  # 1 - 6 * 2 / (3 * 8)
    assert table.loc[(0, 2), "spearman"] == pytest.approx(1.0)
    assert table.loc[(0, 2), "words"] == 2
    assert table.loc[(1, 2), "spearman"] == pytest.approx(1.0)
    assert result.mean_spearman == pytest.approx((0.5 + 1.0 + 1.0) / 3)
    assert result.min_spearman == pytest.approx(0.5)


def test_seed_stability_rejects_mixed_texts():
    with pytest.raises(ValueError, match="the explanations are of 2 different texts; expected one"):
        seed_stability([_explanation("a b", {"a": 1.0}), _explanation("a c", {"a": 1.0})])
    with pytest.raises(ValueError, match="needs at least two explanations; got 1"):
        seed_stability([_explanation("a b", {"a": 1.0})])


def test_stability_across_seeds_on_lime():
    result = stability_across_seeds(lambda seed: explain_text(_score, "a good movie not bad great", num_samples=400, seed=seed), seeds=(0, 1, 2))
    assert result.table[["seed_a", "seed_b"]].values.tolist() == [[0, 1], [0, 2], [1, 2]]
    assert result.mean_spearman > 0.5
    assert result.table["words"].tolist() == [6, 6, 6]


# --- over recommendations ---------------------------------------------------------


def test_checks_over_toy_recommendations():
    items, interactions, features, _, _ = topic_catalog()
    encoder = BagOfWordsEncoder(vocabulary())
    texts = pd.Series(items[COL_TITLE].to_numpy(), index=items[COL_ITEM].to_numpy())
    model = FusedContentRecommender(
        weighted_fusion({"text": encoder.dimension, "noise": 8}, weights={"text": 3.0, "noise": 1.0}),
        {"text": encoder.encode(texts.tolist()), "noise": features["noise"]},
        item_ids=items[COL_ITEM].tolist(), item_texts=texts, text_encoder=encoder,
    ).fit(interactions, items)
    pairs = model.recommend(["u00", "u10", "u20"], k=2)
    deletion = deletion_test_recommendations(model, pairs, k=2, num_samples=200, progress=False)
    assert len(deletion.table) == 6
    assert deletion.pass_rate >= 0.8
    stability = stability_recommendations(model, pairs.head(2), seeds=(0, 1), num_samples=200, progress=False)
    assert len(stability.table) == 2
    assert stability.table["item_id"].tolist() == pairs["item_id"].head(2).tolist()
    table = checks_table(deletion, stability)
    assert table["check"].tolist() == ["LIME deletion test (top 2 vs random words)", "LIME stability across seeds"]
    assert table.loc[0, "value"] == deletion.pass_rate
