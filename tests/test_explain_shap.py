"""Tests for vidrec_lab.explain.shap_fusion: exact SHAP over modalities, text fields, feature groups, tokens.

The first SHAP call in a process compiles shap's numba kernels (several
seconds); the tests after it are fast.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from explain_toys import BagOfWordsEncoder, topic_catalog, vocabulary, weighted_fusion
from vidrec_lab.constants import COL_GENRES, COL_ITEM, COL_TITLE, COL_USER
from vidrec_lab.explain.scorer import FusedContentRecommender
from vidrec_lab.explain.shap_fusion import (
    attribution_table,
    explain_classifier_tokens,
    explain_feature_vector,
    explain_modalities,
    explain_recommendations,
    explain_text_fields,
    mean_attribution,
    plot_attribution_summary,
    plot_attribution_waterfall,
    plot_token_attributions,
    stack_attributions,
    token_attributions,
)
from vidrec_lab.features.text import compose_item_text
from vidrec_lab.tables import DataError


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def signal_noise():
    """Two modalities: one derived from the true topic, one pure noise."""
    items, interactions, features, _, _ = topic_catalog(items_per_topic=10)
    model = FusedContentRecommender(
        weighted_fusion({"signal": 3, "noise": 8}), features, item_ids=items[COL_ITEM].tolist(), background_size=20
    ).fit(interactions, items)
    return model, items, interactions, features


def test_signal_modality_gets_largest_attribution(signal_noise):
    model, _, _, _ = signal_noise
    recs = model.recommend(sorted(model.train_[COL_USER].unique()), k=3)
    attributions = explain_recommendations(model, recs, progress=False)
    summary = mean_attribution(attributions)
    assert summary.index[0] == "signal"
    assert summary.loc["signal", "mean_shap"] > summary.loc["noise", "mean_shap"]
    assert summary.loc["signal", "mean_abs_shap"] > 2 * summary.loc["noise", "mean_abs_shap"]
    assert summary["share_abs"].sum() == pytest.approx(1.0)


def test_two_player_values_match_formula(signal_noise):
    model, _, _, _ = signal_noise
    user, item = "u10", "i105"
    value = model.coalition_scorer(user, item)
    order = list(model.modalities_)
    v = {
        frozenset(): value(np.zeros((1, 2)))[0],
        frozenset({"signal"}): value(np.array([[name == "signal" for name in order]], dtype=float))[0],
        frozenset({"noise"}): value(np.array([[name == "noise" for name in order]], dtype=float))[0],
        frozenset({"signal", "noise"}): value(np.ones((1, 2)))[0],
    }
    attribution = explain_modalities(model, user, item)
    phi = dict(zip(attribution.features, attribution.values))
    expected_signal = 0.5 * ((v[frozenset({"signal"})] - v[frozenset()]) + (v[frozenset({"signal", "noise"})] - v[frozenset({"noise"})]))
    assert phi["signal"] == pytest.approx(expected_signal, abs=1e-6)  # fusion runs in float32
    assert attribution.base_value == pytest.approx(v[frozenset()], abs=1e-6)
    assert attribution.base_value + attribution.values.sum() == pytest.approx(attribution.output, rel=1e-5)
    assert attribution.context == {"user_id": user, "item_id": item}


def test_missing_modality_gets_zero(signal_noise):
    model, items, interactions, features = signal_noise
    mask = {"noise": np.ones(len(items), dtype=bool)}
    mask["noise"][5] = False
    masked = FusedContentRecommender(model.fusion, features, item_ids=items[COL_ITEM].tolist(), mask=mask).fit(interactions, items)
    attribution = explain_modalities(masked, "u00", items[COL_ITEM].iloc[5])
    table = attribution.table().set_index("feature")
    assert table.loc["noise", "shap_value"] == 0.0
    assert not table.loc["noise", "present"]
    assert attribution.base_value + attribution.values.sum() == pytest.approx(attribution.output, rel=1e-5)


def test_text_fields_split_text_and_modalities():
    items, interactions, features, _, _ = topic_catalog()
    encoder = BagOfWordsEncoder(vocabulary())
    texts = compose_item_text(items)
    features = {"text": encoder.encode(texts.tolist()), "noise": features["noise"]}
    model = FusedContentRecommender(
        weighted_fusion({"text": encoder.dimension, "noise": 8}), features, item_ids=items[COL_ITEM].tolist(),
        item_texts=texts, text_encoder=encoder,
    ).fit(interactions, items)
    attribution = explain_text_fields(model, "u00", "i004", items, fields=(COL_TITLE, COL_GENRES))
    phi = dict(zip(attribution.features, attribution.values))
    assert attribution.features == ["field:title", "field:genres", "noise"]
    # The genre words ("Genres: topic0") are outside the encoder's vocabulary, so they change nothing.
    assert phi["field:genres"] == pytest.approx(0.0, abs=1e-9)
    assert phi["field:title"] > 0
    assert attribution.base_value + attribution.values.sum() == pytest.approx(attribution.output, rel=1e-5)


def test_text_fields_need_matching_template():
    items, interactions, features, _, _ = topic_catalog()
    encoder = BagOfWordsEncoder(vocabulary())
    texts = pd.Series(items[COL_TITLE].to_numpy(), index=items[COL_ITEM].to_numpy())
    model = FusedContentRecommender(
        weighted_fusion({"text": encoder.dimension, "noise": 8}), {"text": encoder.encode(texts.tolist()), "noise": features["noise"]},
        item_ids=items[COL_ITEM].tolist(), item_texts=texts, text_encoder=encoder,
    ).fit(interactions, items)
    with pytest.raises(ValueError, match="pass the template and cleaning that built item_texts"):
        explain_text_fields(model, "u00", "i004", items, fields=(COL_TITLE, COL_GENRES))
    assert explain_text_fields(model, "u00", "i004", items, fields=(COL_TITLE,), template="{title}").features == ["field:title", "noise"]
    with pytest.raises(ValueError, match="field 'genres' is not in the template '\\{title\\}'"):
        explain_text_fields(model, "u00", "i004", items, fields=(COL_TITLE, COL_GENRES), template="{title}")


def test_feature_vector_linear_closed_form():
    rng = np.random.default_rng(0)
    w = rng.standard_normal(6)
    x = rng.standard_normal(6)
    background = rng.standard_normal((5, 6))
    groups = {"a": [0, 1], "b": slice(2, 5)}  # column 5 is in no group and keeps its value

    attribution = explain_feature_vector(lambda rows: rows @ w, x, groups, background)
    mean = background.mean(axis=0)
    assert attribution.values[0] == pytest.approx(w[:2] @ (x[:2] - mean[:2]))
    assert attribution.values[1] == pytest.approx(w[2:5] @ (x[2:5] - mean[2:5]))
    assert attribution.output == pytest.approx(w @ x)
    assert attribution.base_value + attribution.values.sum() == pytest.approx(attribution.output)


def test_feature_vector_overlapping_groups():
    with pytest.raises(ValueError, match="column 1 is in more than one group"):
        explain_feature_vector(lambda rows: rows.sum(axis=1), np.ones(3), {"a": [0, 1], "b": [1, 2]}, np.zeros((1, 3)))


def test_attribution_table_rows(signal_noise):
    model, _, _, _ = signal_noise
    attributions = [explain_modalities(model, "u00", "i001"), explain_modalities(model, "u10", "i105")]
    table = attribution_table(attributions)
    assert table.columns.tolist() == ["user_id", "item_id", "feature", "present", "shap_value", "base_value", "output"]
    assert len(table) == 4
    sums = table.groupby(["user_id", "item_id"])["shap_value"].sum() + table.groupby(["user_id", "item_id"])["base_value"].first()
    outputs = table.groupby(["user_id", "item_id"])["output"].first()
    np.testing.assert_allclose(sums.to_numpy(), outputs.to_numpy(), rtol=1e-5)


def test_stack_rejects_different_features(signal_noise):
    model, _, _, _ = signal_noise
    first = explain_modalities(model, "u00", "i001")
    other = explain_feature_vector(lambda rows: rows.sum(axis=1), np.ones(2), {"x": [0], "y": [1]}, np.zeros((1, 2)))
    with pytest.raises(ValueError, match="features differ"):
        stack_attributions([first, other])


def test_plots_draw_on_given_axes(signal_noise):
    from vidrec_lab.viz import new_axes

    model, _, _, _ = signal_noise
    attributions = [explain_modalities(model, user, "i001") for user in ("u00", "u01", "u10")]
    fig, ax = new_axes()
    size = fig.get_size_inches().copy()
    assert plot_attribution_waterfall(attributions[0], ax=ax) is ax
    np.testing.assert_allclose(fig.get_size_inches(), size)
    assert len(ax.patches) >= 2
    plt.close(fig)

    fig, ax = new_axes()
    assert plot_attribution_summary(attributions, ax=ax) is ax
    assert sorted(t.get_text() for t in ax.get_yticklabels()) == ["noise", "signal"]
    plt.close("all")


# --- tokens -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    from transformers import BertTokenizer

    folder = tmp_path_factory.mktemp("tokenizer")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *vocabulary(), "explosion", "the", "on", "bridge"]
    (folder / "vocab.txt").write_text("\n".join(words), encoding="utf-8")
    return BertTokenizer(vocab=str(folder / "vocab.txt"))


def _genre_proba(texts):
    action = np.array([0.9 if "explosion" in t or "犯" in t else 0.2 for t in texts])
    return np.column_stack([1.0 - action, action])


def test_classifier_tokens_find_the_cue(tiny_tokenizer):
    explanation = explain_classifier_tokens(
        _genre_proba, ["explosion on the bridge", "犯罪 love story"], tokenizer=tiny_tokenizer,
        class_names=["Drama", "Action"], max_evals=100,
    )
    table = token_attributions(explanation, "Action")
    table = table[~table["special"]]
    first = table[table["text"] == 0].set_index("token")["shap_value"]
    assert first.idxmax() == "explosion"
    assert first["explosion"] == pytest.approx(0.7, abs=1e-6)
    second = table[table["text"] == 1]
    assert second["token"].tolist()[:2] == ["犯", "罪"]
    assert second.set_index("token")["shap_value"].idxmax() == "犯"
    drama = token_attributions(explanation, 0)
    drama = drama[~drama["special"]]
    assert drama.set_index(["text", "token"]).loc[(0, "explosion"), "shap_value"] == pytest.approx(-0.7, abs=1e-6)

    ax = plot_token_attributions(explanation, index=1, label="Action")
    assert ax.get_yticklabels()[-1].get_text() == "1:犯"  # text order, first token on top
    assert len(ax.patches) == len(second)
    plt.close("all")


def test_token_attributions_unknown_label(tiny_tokenizer):
    explanation = explain_classifier_tokens(
        _genre_proba, ["explosion"], tokenizer=tiny_tokenizer, class_names=["Drama", "Action"], max_evals=20
    )
    with pytest.raises(ValueError, match=r"label 'Horror' is not among the classes \['Drama', 'Action'\]"):
        token_attributions(explanation, "Horror")


def test_classifier_tokens_shape_check(tiny_tokenizer):
    with pytest.raises(ValueError, match=r"predict_proba returned shape \(\d+, 3\); expected \(n, 2\)"):
        explain_classifier_tokens(
            lambda texts: np.zeros((len(texts), 3)), ["explosion"], tokenizer=tiny_tokenizer, class_names=["a", "b"], max_evals=20
        )


def test_explain_recommendations_needs_columns(signal_noise):
    model, _, _, _ = signal_noise
    with pytest.raises(DataError, match=r"explain_recommendations\(pairs\): missing column\(s\) \['item_id'\]"):
        explain_recommendations(model, pd.DataFrame({COL_USER: ["u00"]}))


def test_summary_colour_only_when_presence_varies(signal_noise):
    from vidrec_lab.viz import new_axes

    model, items, interactions, features = signal_noise
    full = [explain_modalities(model, user, "i001") for user in ("u00", "u10")]
    fig, ax = new_axes()
    plot_attribution_summary(full, ax=ax)
    assert len(fig.axes) == 1  # no colour bar: every item has every modality
    plt.close(fig)

    mask = {"noise": np.ones(len(items), dtype=bool)}
    mask["noise"][1] = False
    masked = FusedContentRecommender(model.fusion, features, item_ids=items[COL_ITEM].tolist(), mask=mask).fit(interactions, items)
    mixed = [explain_modalities(masked, "u00", items[COL_ITEM].iloc[i]) for i in (0, 1, 2)]
    fig, ax = new_axes()
    plot_attribution_summary(mixed, ax=ax)
    assert len(fig.axes) == 2  # the colour bar
    plt.close(fig)
