"""Tests for vidrec_lab.explain.scorer: the fused content recommender and its variant scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from explain_toys import BagOfWordsEncoder, topic_catalog, vocabulary, weighted_fusion
from vidrec_lab.constants import COL_ITEM, COL_TITLE, COL_USER
from vidrec_lab.explain.scorer import FusedContentRecommender, reweighted_fusion
from vidrec_lab.fusion import GatedFusion
from vidrec_lab.tables import DataError


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def toy():
    items, interactions, features, item_topic, user_topic = topic_catalog()
    encoder = BagOfWordsEncoder(vocabulary())
    texts = pd.Series(items[COL_TITLE].to_numpy(), index=items[COL_ITEM].to_numpy())
    features = {**features, "text": encoder.encode(texts.tolist())}
    dims = {name: x.shape[1] for name, x in features.items()}
    model = FusedContentRecommender(
        weighted_fusion(dims), features, item_ids=items[COL_ITEM].tolist(), item_texts=texts, text_encoder=encoder,
        background_size=10, seed=0,
    ).fit(interactions, items)
    return model, items, interactions, features, encoder


def _fused(fusion, features, rows, keep=None):
    tensors = {name: torch.from_numpy(x[rows]) for name, x in features.items()}
    mask = None if keep is None else {name: torch.tensor([name in keep] * len(rows)) for name in features}
    with torch.no_grad():
        fused = fusion(tensors, mask).fused.double().numpy()
    return fused / np.linalg.norm(fused, axis=1, keepdims=True)


def test_scores_are_cosine_of_mean_history(toy):
    model, items, interactions, features, _ = toy
    user = "u10"
    history_rows = [model.item_index_[i] for i in interactions.loc[interactions[COL_USER] == user, COL_ITEM]]
    fused = _fused(model.fusion, features, np.arange(len(items)))
    user_vec = fused[history_rows].mean(axis=0)
    user_vec /= np.linalg.norm(user_vec)
    expected = fused @ user_vec
    np.testing.assert_allclose(model.score([user])[0], expected, atol=1e-5)
    assert model.pair_score(user, "i105") == pytest.approx(expected[model.item_index_["i105"]], abs=1e-5)


def test_recommend_excludes_history_and_ranks(toy):
    model, _, interactions, _, _ = toy
    recs = model.recommend(["u00"], k=5)
    seen = set(interactions.loc[interactions[COL_USER] == "u00", COL_ITEM])
    assert not seen & set(recs[COL_ITEM])
    assert recs["rank"].tolist() == [1, 2, 3, 4, 5]
    assert recs["score"].is_monotonic_decreasing


def test_coalitions_match_masked_fusion(toy):
    model, items, _, features, _ = toy
    user, item = "u00", "i003"
    score = model.coalition_scorer(user, item)
    names = list(model.modalities_)
    all_in = score(np.ones((1, len(names))))[0]
    assert all_in == pytest.approx(model.pair_score(user, item), abs=1e-6)

    user_vec = model.user_vector(user)
    only_signal = np.array([[name == "signal" for name in names]], dtype=float)
    row = model.item_index_[item]
    expected = _fused(model.fusion, features, np.array([row]), keep={"signal"})[0] @ user_vec
    assert score(only_signal)[0] == pytest.approx(expected, abs=1e-6)

    background = np.mean(model.item_vectors_[model.background_rows_] @ user_vec)
    assert score(np.zeros((1, len(names))))[0] == pytest.approx(background, abs=1e-9)


def test_text_scorer_reproduces_stored_text(toy):
    model, _, _, _, encoder = toy
    user, item = "u20", "i201"
    score = model.text_scorer(user, item)
    calls_before = len(encoder.calls)
    values = score([model.item_text(item), "", model.item_text(item) + " blue"])
    assert len(encoder.calls) == calls_before + 1  # all texts in one encoder call
    assert values[0] == pytest.approx(model.pair_score(user, item), abs=1e-6)
    without_text = [[name != "text" for name in model.modalities_]]
    assert values[1] == pytest.approx(model.coalition_scorer(user, item)(np.array(without_text, dtype=float))[0], abs=1e-6)
    assert values[2] != pytest.approx(values[0], abs=1e-6)


def test_missing_modality_never_read(toy):
    _, items, interactions, features, encoder = toy
    mask = {"noise": np.ones(len(items), dtype=bool)}
    mask["noise"][0] = False
    broken = {name: x.copy() for name, x in features.items()}
    broken["noise"][0] = np.nan
    dims = {name: x.shape[1] for name, x in features.items()}
    model = FusedContentRecommender(weighted_fusion(dims), broken, item_ids=items[COL_ITEM].tolist(), mask=mask).fit(interactions, items)
    assert not model.availability_[0, model.modalities_.index("noise")]
    score = model.coalition_scorer("u00", items[COL_ITEM].iloc[0])
    names = list(model.modalities_)
    with_noise = score(np.ones((1, len(names))))[0]
    without_noise = score(np.array([[name != "noise" for name in names]], dtype=float))[0]
    assert np.isfinite(with_noise)
    assert with_noise == pytest.approx(without_noise, abs=1e-9)


def test_fixed_empty_score(toy):
    model, items, interactions, features, _ = toy
    model = FusedContentRecommender(model.fusion, features, item_ids=items[COL_ITEM].tolist(), empty_score=-0.25).fit(interactions, items)
    assert model.coalition_scorer("u00", "i001")(np.zeros((2, 3))).tolist() == [-0.25, -0.25]


def test_set_fusion_weights_keeps_projections(toy):
    model, _, _, _, _ = toy
    before = model.fusion.projections["signal"][1].weight.detach().clone()
    old_scores = model.score(["u00"])[0]
    model.set_fusion_weights({"signal": 3.0, "noise": 1.0, "text": 1.0})
    assert model.fusion_weights == pytest.approx({"signal": 0.6, "noise": 0.2, "text": 0.2})
    assert torch.equal(model.fusion.projections["signal"][1].weight, before)
    assert not np.allclose(model.score(["u00"])[0], old_scores)


def test_reweight_rejects_gated_fusion():
    gated = GatedFusion({"a": 2, "b": 2}, 4)
    with pytest.raises(TypeError, match="only be set on a WeightedSumFusion; got GatedFusion"):
        reweighted_fusion(gated, {"a": 1.0, "b": 1.0})


def test_reweight_rejects_non_positive_weight(toy):
    model, _, _, _, _ = toy
    with pytest.raises(ValueError, match="weight of modality 'noise' is 0"):
        model.set_fusion_weights({"signal": 1.0, "noise": 0, "text": 1.0})


def test_catalog_item_without_features(toy):
    model, items, interactions, features, _ = toy
    partial = {name: x[:-1] for name, x in features.items()}
    recommender = FusedContentRecommender(model.fusion, partial, item_ids=items[COL_ITEM].tolist()[:-1])
    with pytest.raises(DataError, match=r"1 catalog items have no feature row, e.g. \['i207'\]"):
        recommender.fit(interactions, items)


def test_modalities_must_match_fusion(toy):
    model, items, interactions, features, _ = toy
    fewer = {name: x for name, x in features.items() if name != "noise"}
    with pytest.raises(DataError, match=r"features name the modalities \['signal', 'text'\]"):
        FusedContentRecommender(model.fusion, fewer, item_ids=items[COL_ITEM].tolist()).fit(interactions, items)


def test_user_without_history(toy):
    model, _, _, _, _ = toy
    with pytest.raises(DataError, match="user 'nobody' has no history item in the catalog"):
        model.user_vector("nobody")


def test_unknown_item(toy):
    model, _, _, _, _ = toy
    with pytest.raises(KeyError, match="item 'zzz' is not in the catalog"):
        model.text_scorer("u00", "zzz")


def test_bad_empty_score():
    with pytest.raises(ValueError, match="empty_score must be one of \\['background'\\] or a number; got 'zero'"):
        FusedContentRecommender(None, {}, item_ids=[], empty_score="zero")


# --- ClassifierProba -----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny_bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *vocabulary()]
    (folder / "vocab.txt").write_text("\n".join(words), encoding="utf-8")
    BertTokenizer(vocab=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_classifier_proba_matches_forward(tiny_bert, task):
    from vidrec_lab.explain.scorer import ClassifierProba
    from vidrec_lab.models.finetune import FineTuneClassifier, load_tokenizer

    torch.manual_seed(0)
    module = FineTuneClassifier(str(tiny_bert), 2, task=task, label_names=["Drama", "Action"]).eval()
    proba = ClassifierProba(module, batch_size=2)
    texts = ["space rocket", "爱情 love story", "crime"]
    probs = proba(texts)
    assert probs.shape == (3, 2)
    assert proba.class_names == ["Drama", "Action"]
    tokenizer = load_tokenizer(str(tiny_bert))
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = module(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    expected = torch.softmax(logits, dim=1) if task == "multiclass" else torch.sigmoid(logits)
    np.testing.assert_allclose(probs, expected.numpy(), atol=1e-5)
    if task == "multiclass":
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)


def test_classifier_proba_drives_lime_and_token_shap(tiny_bert):
    from vidrec_lab.explain.lime_text import explain_text_classifier
    from vidrec_lab.explain.scorer import ClassifierProba
    from vidrec_lab.explain.shap_fusion import explain_classifier_tokens, token_attributions
    from vidrec_lab.models.finetune import FineTuneClassifier

    torch.manual_seed(0)
    proba = ClassifierProba(FineTuneClassifier(str(tiny_bert), 2, task="multiclass", label_names=["Drama", "Action"]))
    lime = explain_text_classifier(proba, "爱情 love story", label="Action", class_names=proba.class_names, num_samples=50)
    assert set(lime.weights["word"]) == {"爱", "情", "love", "story"}
    assert lime.output == pytest.approx(proba(["爱情 love story"])[0, 1], abs=1e-6)
    tokens = explain_classifier_tokens(proba, ["爱情 love story"], tokenizer=proba.tokenizer, class_names=proba.class_names, max_evals=20)
    table = token_attributions(tokens, "Action")
    assert table.loc[~table["special"], "token"].tolist() == ["爱", "情", "love", "story"]
    assert table["special"].sum() == 2  # [CLS] and [SEP]
    total = table["shap_value"].sum() + np.asarray(tokens.base_values)[0][1]
    assert total == pytest.approx(proba(["爱情 love story"])[0, 1], abs=1e-6)


def test_classifier_proba_needs_task():
    from vidrec_lab.explain.scorer import ClassifierProba

    class Bare(torch.nn.Module):
        hparams = {"task": "ranking"}

    with pytest.raises(ValueError, match="hparams must name task 'multilabel' or 'multiclass'; got 'ranking'"):
        ClassifierProba(Bare(), tokenizer=object())


def test_build_fused_recommender_end_to_end():
    from vidrec_lab.explain.scorer import build_fused_recommender
    from vidrec_lab.features.text import compose_item_text

    items, interactions, _, _, _ = topic_catalog(chinese=True)
    cold = pd.DataFrame({COL_ITEM: ["new1"], COL_TITLE: ["太空 rocket planet"], "genres": [["topic0"]]})
    catalog = pd.concat([items, cold], ignore_index=True)
    encoder = BagOfWordsEncoder(vocabulary())
    setup = build_fused_recommender(catalog, interactions, encoder=encoder, fusion_dim=8, behavior_dim=32, max_epochs=2, cache=False, seed=0)
    model = setup.model
    assert model.modalities_ == ("text", "behavior")
    assert setup.features["behavior"].shape == (len(catalog), 9)  # 9 users limit the SVD
    with_interactions = set(interactions[COL_ITEM])
    assert setup.mask["behavior"].tolist() == [item in with_interactions for item in catalog[COL_ITEM]]
    assert not setup.mask["behavior"][-1]  # the new item has no behaviour vector
    assert model.fusion_weights == pytest.approx({"text": 0.5, "behavior": 0.5})
    assert model.item_text("new1") == compose_item_text(cold).iloc[0]
    assert model.text_scorer("u00", "new1")([model.item_text("new1")])[0] == pytest.approx(model.pair_score("u00", "new1"), abs=1e-6)
    summary = setup.summary()
    assert summary["items without behavior"] == len(catalog) - len(with_interactions)
    assert summary["text dim"] == encoder.dimension


def test_build_fused_recommender_rejects_target():
    from vidrec_lab.explain.scorer import build_fused_recommender

    items, interactions, _, _, _ = topic_catalog()
    with pytest.raises(ValueError, match=r"target must be one of \['users', 'genres'\]; got 'clicks'"):
        build_fused_recommender(items, interactions, encoder=BagOfWordsEncoder(vocabulary()), target="clicks", cache=False)


def test_given_user_vector_is_used(toy):
    model, _, _, _, _ = toy
    vector = model.user_vector("u00")
    assert model.pair_score("u00", "i105", user_vector=vector) == model.pair_score("u00", "i105")
    other = model.user_vector("u20")
    assert model.pair_score("u00", "i105", user_vector=other) == pytest.approx(model.pair_score("u20", "i105"))
    with pytest.raises(ValueError, match=r"user_vector has shape \(3,\); expected \(16,\)"):
        model.coalition_scorer("u00", "i105", user_vector=np.zeros(3))
