"""Tests for vidrec_lab.explain.lime_text: tokenizers, regression and classifier LIME, the recommender path."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

from explain_toys import TOPIC_WORDS, BagOfWordsEncoder, topic_catalog, vocabulary, weighted_fusion
from vidrec_lab.constants import COL_ITEM, COL_TITLE, COL_USER
from vidrec_lab.explain.lime_text import (
    cjk_tokenize,
    explain_recommendation_text,
    explain_text,
    explain_text_classifier,
    plot_word_weights,
    remove_tokens,
    split_expression_for,
    text_tokens,
)
from vidrec_lab.explain.scorer import FusedContentRecommender


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _linear_score(texts):
    """2 for 'good', -1 for 'bad', 0.5 for everything: a model LIME must recover exactly."""
    return np.array([0.5 + 2.0 * ("good" in t.split()) - 1.0 * ("bad" in t.split()) for t in texts])


# --- tokenizers ----------------------------------------------------------------


def test_cjk_tokenize_mixed_title():
    assert cjk_tokenize("功夫熊猫 Kung Fu Panda 2") == ["功", "夫", "熊", "猫", "Kung", "Fu", "Panda", "2"]


def test_cjk_tokenize_kana_and_punctuation():
    assert cjk_tokenize("となりのトトロ。「龙猫」!") == ["と", "な", "り", "の", "ト", "ト", "ロ", "龙", "猫"]


def test_auto_tokenizer_choice():
    assert split_expression_for("The Usual Suspects") == r"\W+"
    assert split_expression_for("无间道", "words") == r"\W+"
    assert text_tokens("无间道 Infernal Affairs") == cjk_tokenize("无间道 Infernal Affairs")


@pytest.mark.parametrize("text", ["功夫熊猫 Kung Fu Panda 2", "となりのトトロ。「龙猫」!", "abc功夫def 12", "龙猫龙猫"])
def test_cjk_mode_matches_cjk_tokenize(text):
    assert text_tokens(text, "cjk") == list(dict.fromkeys(cjk_tokenize(text)))


def test_keep_words_never_tokens():
    text = "Toy Story. Tags: a film. Genres: Comedy"
    assert text_tokens(text, keep_words=("Tags", "Genres")) == ["Toy", "Story", "a", "film", "Comedy"]
    # "a" also occurs inside "Tags"; only the word is removed.
    assert remove_tokens(text, ["a"], keep_words=("Tags", "Genres")) == "Toy Story. Tags:  film. Genres: Comedy"
    chinese = "功夫. Tags: 熊猫 a"
    assert text_tokens(chinese, keep_words=("Tags",)) == ["功", "夫", "熊", "猫", "a"]
    assert remove_tokens(chinese, ["a", "熊"], keep_words=("Tags",)) == "功夫. Tags: 猫 "


def test_keep_words_need_builtin_tokenizer():
    with pytest.raises(ValueError, match="keep_words works with the built-in tokenizers only"):
        split_expression_for("a b", str.split, keep_words=("a",))


def test_template_words_of_default_template():
    from vidrec_lab.explain.lime_text import template_words
    from vidrec_lab.features.text import DEFAULT_TEMPLATE

    assert template_words(DEFAULT_TEMPLATE) == ("Tags", "Genres")
    assert template_words("{title} ({year}) by {director}") == ("by",)


def test_words_tokenizer_keeps_chinese_title_whole():
    assert text_tokens("无间道", "words") == ["无间道"]
    assert text_tokens("无间道", "auto") == ["无", "间", "道"]


def test_unknown_tokenizer():
    with pytest.raises(ValueError, match=r"tokenizer must be one of \['auto', 'words', 'cjk'\] or a callable; got 'jieba'"):
        split_expression_for("text", "jieba")


def test_remove_tokens_chinese_and_latin():
    assert remove_tokens("功夫熊猫 Kung Fu Panda", ["熊", "Fu"]) == "功夫猫 Kung  Panda"


def test_remove_unknown_token():
    with pytest.raises(KeyError, match="token 'dog' is not in the text"):
        remove_tokens("good cat", ["dog"])


# --- regression mode ----------------------------------------------------------------


def test_linear_model_weights_recovered():
    explanation = explain_text(_linear_score, "a good movie not bad", num_samples=1500, seed=0)
    weights = explanation.weight_of()
    assert explanation.output == pytest.approx(1.5)
    assert weights["good"] == pytest.approx(2.0, abs=0.05)
    assert weights["bad"] == pytest.approx(-1.0, abs=0.05)
    for word in ("a", "movie", "not"):
        assert abs(weights[word]) < 0.05
    assert explanation.weights["word"].tolist()[:2] == ["good", "bad"]
    assert explanation.r2 > 0.99


def test_same_seed_same_weights():
    first = explain_text(_linear_score, "good plot bad acting great music", num_samples=200, seed=3)
    second = explain_text(_linear_score, "good plot bad acting great music", num_samples=200, seed=3)
    pd.testing.assert_frame_equal(first.weights, second.weights)


def test_scorer_called_once_on_distinct_texts():
    calls = []

    def score(texts):
        calls.append(list(texts))
        return _linear_score(texts)

    explanation = explain_text(score, "good bad ugly", num_samples=500, seed=0)
    assert len(calls) == 1
    assert len(set(calls[0])) == len(calls[0])
    assert len(calls[0]) <= 2**3  # 3 words: at most 8 subsets
    assert explanation.unique_texts == len(calls[0])


def test_num_features_limits_words():
    explanation = explain_text(_linear_score, "a good movie not bad", num_features=2, num_samples=300)
    assert sorted(explanation.weights["word"]) == ["bad", "good"]


def test_chinese_title_weights_per_character():
    def score(texts):
        return np.array([t.count("熊") * 1.0 + t.count("猫") * 0.5 for t in texts])

    explanation = explain_text(score, "功夫熊猫", num_samples=300, seed=0)
    assert explanation.weights["word"].tolist()[:2] == ["熊", "猫"]
    assert explanation.weight_of()["熊"] == pytest.approx(1.0, abs=0.05)


def test_scorer_with_wrong_shape():
    with pytest.raises(ValueError, match=r"returned shape \(\d+, 2\) for \d+ texts; expected one score per text"):
        explain_text(lambda texts: np.zeros((len(texts), 2)), "good bad", num_samples=20)


def test_scorer_with_nan():
    with pytest.raises(ValueError, match="non-finite output for the text"):
        explain_text(lambda texts: np.full(len(texts), np.nan), "good bad", num_samples=20)


def test_empty_text_rejected():
    with pytest.raises(ValueError, match="explain_text: text must be a non-empty string; got ' '"):
        explain_text(_linear_score, " ")


def test_text_without_tokens_rejected():
    with pytest.raises(ValueError, match=r"the text '\.\.\. !' has no tokens to perturb"):
        explain_text(_linear_score, "... !")


def test_bad_num_samples():
    with pytest.raises(ValueError, match="num_samples must be an integer of at least 2; got 1"):
        explain_text(_linear_score, "good", num_samples=1)


# --- classifier mode ------------------------------------------------------------


def _genre_proba(texts):
    action = np.array([0.9 if "explosion" in t.split() else 0.2 for t in texts])
    return np.column_stack([1.0 - action, action])


def test_classifier_label_by_name():
    explanation = explain_text_classifier(
        _genre_proba, "explosion on the bridge", label="Action", class_names=["Drama", "Action"], num_samples=300
    )
    assert explanation.label == "Action"
    assert explanation.output == pytest.approx(0.9)
    assert explanation.weights["word"].iloc[0] == "explosion"
    assert explanation.weight_of()["explosion"] == pytest.approx(0.7, abs=0.05)


def test_classifier_default_label_is_argmax():
    explanation = explain_text_classifier(_genre_proba, "quiet talk", class_names=["Drama", "Action"], num_samples=50)
    assert explanation.label == "Drama"


def test_classifier_unknown_label():
    with pytest.raises(ValueError, match=r"label 'Horror' is not among the classes \['Drama', 'Action'\]"):
        explain_text_classifier(_genre_proba, "quiet talk", label="Horror", class_names=["Drama", "Action"])


def test_classifier_class_names_length():
    with pytest.raises(ValueError, match="3 class_names for 2 predict_proba columns"):
        explain_text_classifier(_genre_proba, "quiet talk", class_names=["a", "b", "c"])


# --- recommender path and ground truth --------------------------------------------


def _toy_recommender(chinese: bool = False):
    items, interactions, features, _, user_topic = topic_catalog(chinese=chinese)
    encoder = BagOfWordsEncoder(vocabulary())
    texts = pd.Series(items[COL_TITLE].to_numpy(), index=items[COL_ITEM].to_numpy())
    features = {"text": encoder.encode(texts.tolist()), "noise": features["noise"]}
    dims = {name: x.shape[1] for name, x in features.items()}
    model = FusedContentRecommender(
        weighted_fusion(dims, weights={"text": 3.0, "noise": 1.0}), features, item_ids=items[COL_ITEM].tolist(),
        item_texts=texts, text_encoder=encoder,
    ).fit(interactions, items)
    return model, user_topic, encoder


def test_topic_words_get_largest_weights():
    model, user_topic, _ = _toy_recommender()
    recs = model.recommend(["u00", "u10", "u20"], k=2)
    hits = 0
    for user, item in zip(recs[COL_USER], recs[COL_ITEM]):
        explanation = explain_recommendation_text(model, user, item, num_samples=300, seed=0)
        weights = explanation.weight_of()
        topic = set(TOPIC_WORDS[user_topic[user]])
        topic_mean = np.mean([w for word, w in weights.items() if word in topic])
        noise_mean = np.mean([w for word, w in weights.items() if word not in topic])
        assert topic_mean > noise_mean
        hits += explanation.top_words(1)[0] in topic
    assert hits == len(recs)


def test_recommendation_text_chinese_passes_through():
    model, user_topic, encoder = _toy_recommender(chinese=True)
    item = model.recommend(["u10"], k=1)[COL_ITEM].iloc[0]
    calls_before = len(encoder.calls)
    explanation = explain_recommendation_text(model, "u10", item, num_samples=200, seed=0)
    assert len(encoder.calls) == calls_before + 1
    assert explanation.text.startswith("爱情 ")
    assert {"爱", "情"} <= set(explanation.weights["word"])
    assert explanation.output == pytest.approx(model.pair_score("u10", item), abs=1e-6)
    assert explanation.context == {"user_id": "u10", "item_id": item}
    assert explanation.weight_of()["爱"] > 0


def test_recommendation_text_needs_text_methods():
    with pytest.raises(TypeError, match="has no method item_text\\(\\)"):
        explain_recommendation_text(object(), "u", "i")


def test_real_text_encoder_on_tiny_bert(tmp_path):
    from transformers import BertConfig, BertModel, BertTokenizer

    from vidrec_lab.features.text import TextEncoder

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *vocabulary()]
    (tmp_path / "vocab.txt").write_text("\n".join(words), encoding="utf-8")
    BertTokenizer(vocab=str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertModel(config).save_pretrained(tmp_path)
    encoder = TextEncoder(tmp_path)

    items, interactions, features, _, _ = topic_catalog(chinese=True)
    texts = pd.Series(items[COL_TITLE].to_numpy(), index=items[COL_ITEM].to_numpy())
    features = {"text": encoder.encode(texts.tolist()), "noise": features["noise"]}
    model = FusedContentRecommender(
        weighted_fusion({"text": 16, "noise": 8}), features, item_ids=items[COL_ITEM].tolist(), item_texts=texts,
        text_encoder=encoder,
    ).fit(interactions, items)
    explanation = explain_recommendation_text(model, "u00", "i005", num_samples=100, seed=1)
    assert explanation.output == pytest.approx(model.pair_score("u00", "i005"), abs=1e-5)
    assert set(explanation.weights["word"]) == set(text_tokens(texts["i005"]))
    assert {"太", "空"} <= set(explanation.weights["word"])


# --- figure ------------------------------------------------------------------


def test_plot_word_weights_bars_and_colours():
    from vidrec_lab.viz import PALETTE

    explanation = explain_text(_linear_score, "a good movie not bad", num_samples=300)
    ax = plot_word_weights(explanation, max_words=3)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 3
    assert labels[1:] == ["bad", "good"]  # largest absolute weight drawn on top
    bars = ax.patches
    assert len(bars) == 3
    assert matplotlib.colors.to_hex(bars[-1].get_facecolor()).lower() == PALETTE[0].lower()
    assert matplotlib.colors.to_hex(bars[-2].get_facecolor()).lower() == PALETTE[3].lower()
    assert "score = 1.500" in ax.get_title()
    matplotlib.pyplot.close(ax.figure)


def test_recommendation_text_keeps_template_labels():
    from vidrec_lab.features.text import compose_item_text

    items, interactions, features, _, _ = topic_catalog()
    encoder = BagOfWordsEncoder(vocabulary())
    texts = compose_item_text(items)
    model = FusedContentRecommender(
        weighted_fusion({"text": encoder.dimension, "noise": 8}), {"text": encoder.encode(texts.tolist()), "noise": features["noise"]},
        item_ids=items[COL_ITEM].tolist(), item_texts=texts, text_encoder=encoder,
    ).fit(interactions, items)
    explanation = explain_recommendation_text(model, "u00", "i003", num_samples=100)
    assert "Genres:" in explanation.text
    assert "Genres" not in set(explanation.weights["word"])
    assert "topic0" in set(explanation.weights["word"])
    assert explanation.keep_words == ("Tags", "Genres")
    everything = explain_recommendation_text(model, "u00", "i003", num_samples=100, keep_words=())
    assert "Genres" in set(everything.weights["word"])
