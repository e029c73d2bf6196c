"""Tests for vidrec_lab.fusion: module shapes, masking, gradients, errors, training helpers."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from vidrec_lab.constants import COL_GENRES, COL_ITEM
from vidrec_lab.fusion import (
    FUSION_METHODS,
    AttentionFusion,
    ConcatFusion,
    FusionModel,
    GatedFusion,
    WeightedSumFusion,
    classification_metrics,
    compare_fusion_methods,
    fit_fusion,
    plot_modality_weights,
    genre_labels,
    make_fusion,
    multi_hot,
    split_items,
    tune_thresholds,
)
from vidrec_lab.tables import DataError

DIMS = {"text": 6, "video": 4, "audio": 3}
OUT = 8


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    logging.getLogger("lightning").setLevel(logging.WARNING)


def _batch(batch_size: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(batch_size, dim, generator=generator) for name, dim in DIMS.items()}


def _build(method: str, **kwargs):
    torch.manual_seed(0)
    return make_fusion(method, DIMS, OUT, **kwargs)


# --- shapes -----------------------------------------------------------------


@pytest.mark.parametrize("method", list(FUSION_METHODS))
def test_output_shapes(method):
    fusion = _build(method).eval()
    out = fusion(_batch())
    assert out.fused.shape == (5, OUT)
    if method == "concat":
        assert out.weights is None
    else:
        assert out.weights.shape == (5, 3)
        assert torch.allclose(out.weights.sum(dim=1), torch.ones(5), atol=1e-6)
        assert (out.weights >= 0).all()


def test_concat_without_projection_keeps_concatenation():
    fusion = ConcatFusion(DIMS).eval()
    out = fusion(_batch())
    assert fusion.out_dim == 13
    assert out.fused.shape == (5, 13)


def test_concat_l2_norm_gives_unit_blocks():
    fusion = ConcatFusion(DIMS, norm="l2").eval()
    out = fusion(_batch()).fused
    for block in torch.split(out, [6, 4, 3], dim=1):
        assert torch.allclose(block.norm(dim=1), torch.ones(5), atol=1e-6)


def test_weighted_fixed_weights_normalised():
    fusion = WeightedSumFusion(DIMS, OUT, weights={"text": 2.0, "video": 1.0, "audio": 1.0}).eval()
    out = fusion(_batch())
    assert torch.allclose(out.weights, torch.tensor([[0.5, 0.25, 0.25]]).expand(5, 3), atol=1e-6)
    masked = fusion(_batch(), {"video": torch.tensor([False, True, True, True, True])})
    # Without video, text and audio keep their 2:1 ratio.
    assert torch.allclose(masked.weights[0], torch.tensor([2 / 3, 0.0, 1 / 3]), atol=1e-6)


def test_weighted_fused_is_weighted_sum_of_projections():
    fusion = WeightedSumFusion(DIMS, OUT, weights={"text": 1.0, "video": 1.0, "audio": 2.0}).eval()
    batch = _batch()
    expected = sum(w * fusion.projections[name](batch[name]) for name, w in zip(DIMS, (0.25, 0.25, 0.5)))
    assert torch.allclose(fusion(batch).fused, expected, atol=1e-6)


def test_attention_multi_head_shapes():
    fusion = AttentionFusion(DIMS, OUT, num_heads=2).eval()
    out = fusion(_batch(batch_size=3))
    assert out.fused.shape == (3, OUT)
    assert out.weights.shape == (3, 3)


# --- masking ----------------------------------------------------------------


@pytest.mark.parametrize("method", list(FUSION_METHODS))
def test_masked_modality_input_ignored(method):
    fusion = _build(method).eval()
    batch = _batch()
    mask = {"video": torch.tensor([True, False, True, False, True])}
    changed = dict(batch)
    changed["video"] = batch["video"].clone()
    changed["video"][[1, 3]] = torch.randn(2, 4) * 100
    first = fusion(batch, mask)
    second = fusion(changed, mask)
    assert torch.equal(first.fused[[1, 3]], second.fused[[1, 3]])
    # Changing an unmasked row does change its output, so the check above can fail.
    changed["video"][0] = torch.tensor([3.0, -1.0, 0.5, 2.0])
    assert not torch.allclose(fusion(changed, mask).fused[0], first.fused[0])
    if method != "concat":
        assert torch.equal(first.weights[[1, 3], 1], torch.zeros(2))
        assert torch.allclose(first.weights.sum(dim=1), torch.ones(5), atol=1e-6)


@pytest.mark.parametrize("method", list(FUSION_METHODS))
def test_nan_placeholder_in_masked_rows(method):
    fusion = _build(method).eval()
    batch = _batch()
    batch["audio"][2] = float("nan")
    out = fusion(batch, {"audio": torch.tensor([True, True, False, True, True])})
    assert torch.isfinite(out.fused).all()


def test_concat_masked_slot_uses_missing_embedding():
    fusion = ConcatFusion(DIMS, norm="layernorm").eval()
    out = fusion(_batch(), {"text": torch.tensor([False, True, True, True, True])}).fused
    assert torch.equal(out[0, :6], fusion.missing_embeddings["text"].detach())
    assert not torch.equal(out[1, :6], fusion.missing_embeddings["text"].detach())


@pytest.mark.parametrize("method", list(FUSION_METHODS))
def test_all_modalities_masked_raises(method):
    fusion = _build(method)
    none = torch.tensor([True, False, True, True, True])
    mask = {name: none for name in DIMS}
    with pytest.raises(ValueError, match=r"batch row\(s\) \[1\] have every modality masked"):
        fusion(_batch(), mask)


def test_modality_dropout_never_drops_all():
    torch.manual_seed(0)
    fusion = WeightedSumFusion(DIMS, OUT, modality_dropout=0.9).train()
    weights = fusion(_batch(batch_size=400)).weights
    present = weights > 0
    assert present.any(dim=1).all()
    # With p = 0.9 most items keep exactly one modality.
    assert (present.sum(dim=1) == 1).float().mean() > 0.5
    # In eval mode nothing is dropped.
    assert (fusion.eval()(_batch(batch_size=400)).weights > 0).all()


def test_modality_dropout_respects_mask():
    torch.manual_seed(0)
    fusion = GatedFusion(DIMS, OUT, modality_dropout=0.5).train()
    only_text = {"video": torch.zeros(50, dtype=torch.bool), "audio": torch.zeros(50, dtype=torch.bool)}
    weights = fusion(_batch(batch_size=50), only_text).weights
    assert torch.allclose(weights[:, 0], torch.ones(50))


# --- gradients --------------------------------------------------------------


@pytest.mark.parametrize("method", ["weighted", "gated", "attention"])
def test_gradients_reach_every_projection(method):
    fusion = _build(method)
    out = fusion(_batch())
    (out.fused ** 2).sum().backward()
    for name in DIMS:
        grad = fusion.projections[name][1].weight.grad
        assert grad is not None, name
        assert grad.abs().sum() > 0, name


def test_concat_gradients_reach_every_modality():
    fusion = _build("concat")
    mask = {"audio": torch.tensor([True, True, True, True, False])}
    (fusion(_batch(), mask).fused ** 2).sum().backward()
    for name in DIMS:
        assert fusion.norms[name].weight.grad.abs().sum() > 0, name
    assert fusion.missing_embeddings["audio"].grad.abs().sum() > 0
    assert fusion.missing_embeddings["text"].grad is None or fusion.missing_embeddings["text"].grad.abs().sum() == 0


def test_learned_weight_logits_get_gradient():
    fusion = _build("weighted")
    (fusion(_batch()).fused.sum() ** 2).backward()
    assert fusion.weight_logits.grad.abs().sum() > 0


# --- errors -----------------------------------------------------------------


@pytest.mark.parametrize("method", list(FUSION_METHODS))
def test_wrong_dimension_raises(method):
    fusion = _build(method)
    batch = _batch()
    batch["video"] = torch.randn(5, 7)
    with pytest.raises(ValueError, match=r"modality 'video' has shape \(5, 7\); expected \(batch, 4\)"):
        fusion(batch)


def test_unknown_modality_raises():
    batch = _batch()
    batch["cover"] = torch.randn(5, 2)
    with pytest.raises(ValueError, match=r"unknown modality 'cover'; expected modalities \['text', 'video', 'audio'\]"):
        _build("gated")(batch)


def test_missing_modality_raises():
    batch = _batch()
    del batch["audio"]
    with pytest.raises(ValueError, match="modality 'audio' is missing from features"):
        _build("attention")(batch)


def test_batch_size_mismatch_raises():
    batch = _batch()
    batch["audio"] = torch.randn(4, 3)
    with pytest.raises(ValueError, match="modality 'audio' has batch size 4; expected 5 like 'text'"):
        _build("weighted")(batch)


def test_bad_mask_raises():
    fusion = _build("gated")
    with pytest.raises(ValueError, match=r"mask for modality 'text' has shape \(4,\).*expected a torch.bool tensor of shape \(5,\)"):
        fusion(_batch(), {"text": torch.ones(4, dtype=torch.bool)})
    with pytest.raises(ValueError, match="mask names unknown modality 'cover'"):
        fusion(_batch(), {"cover": torch.ones(5, dtype=torch.bool)})


def test_constructor_errors():
    with pytest.raises(ValueError, match="modality 'video' has size 0; expected a positive integer"):
        GatedFusion({"text": 3, "video": 0}, 4)
    with pytest.raises(ValueError, match=r"norm must be one of \['layernorm', 'l2'\]; got 'batch'"):
        ConcatFusion(DIMS, norm="batch")
    with pytest.raises(ValueError, match="out_dim 5 is not divisible by num_heads 2"):
        AttentionFusion(DIMS, 5, num_heads=2)
    with pytest.raises(ValueError, match="weight of modality 'audio' is 0.0; expected a positive number"):
        WeightedSumFusion(DIMS, 4, weights={"text": 1.0, "video": 1.0, "audio": 0.0})
    with pytest.raises(ValueError, match="weights must name exactly the modalities"):
        WeightedSumFusion(DIMS, 4, weights={"text": 1.0})
    with pytest.raises(ValueError, match=r"fusion method must be one of .*; got 'sum'"):
        make_fusion("sum", DIMS, 4)
    with pytest.raises(ValueError, match=r"modality_dropout must be a probability in \[0, 1\); got 1.0"):
        GatedFusion(DIMS, 4, modality_dropout=1.0)


# --- labels, splits, metrics ------------------------------------------------


def test_multi_hot_keeps_chinese_labels():
    y, classes = multi_hot([["动作", "Comedy"], [], ["Comedy"]])
    assert classes == ["Comedy", "动作"]
    assert y.tolist() == [[1.0, 1.0], [0.0, 0.0], [1.0, 0.0]]
    with pytest.raises(DataError, match="row 0 has label 'Drama'"):
        multi_hot([["Drama"]], classes=["Comedy"])


def test_genre_labels_min_count():
    items = pd.DataFrame({COL_ITEM: ["a", "b", "c"], COL_GENRES: [["爱情", "Drama"], ["Drama"], ["Horror"]]})
    y, genres = genre_labels(items, min_count=2)
    assert genres == ["Drama"]
    assert y[:, 0].tolist() == [1.0, 1.0, 0.0]
    with pytest.raises(DataError, match=r"missing column\(s\) \['genres'\]"):
        genre_labels(items.drop(columns=[COL_GENRES]))


def test_split_items_groups_rows_by_item():
    ids = ["a", "b", "c", "d", "e", "a", "b", "视频"] * 3
    split = split_items(ids, val_fraction=0.2, test_fraction=0.2, seed=3)
    seen = {name: {ids[i] for i in rows} for name, rows in split.items()}
    assert not seen["train"] & seen["val"]
    assert not seen["train"] & seen["test"]
    assert not seen["val"] & seen["test"]
    assert sorted(np.concatenate(list(split.values())).tolist()) == list(range(len(ids)))
    # 6 distinct items: ceil(0.2 * 6) = 2 for val and for test.
    assert len(seen["val"]) == 2
    assert len(seen["test"]) == 2
    again = split_items(ids, val_fraction=0.2, test_fraction=0.2, seed=3)
    assert all(np.array_equal(split[k], again[k]) for k in split)


def test_split_items_rejects_bad_fractions():
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction must be below 1"):
        split_items(["a", "b"], val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="2 distinct items leave none for training"):
        split_items(["a", "b"], val_fraction=0.4, test_fraction=0.4)


def test_classification_metrics_hand_computed():
    targets = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    probs = np.array([[0.9, 0.2], [0.6, 0.4], [0.7, 0.1], [0.1, 0.8]])
    m = classification_metrics(targets, probs, task="multilabel")
    # Predictions at 0.5: [[1,0],[1,0],[1,0],[0,1]]: label 0 tp=2 fp=1 fn=0, label 1 tp=1 fp=0 fn=1.
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert m["accuracy"] == pytest.approx(0.5)
    tuned = classification_metrics(targets, probs, task="multilabel", thresholds=np.array([0.8, 0.3]))
    assert tuned["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 0 + 1))
    multiclass = classification_metrics(np.array([0, 2, 1, 2]), np.eye(3)[[0, 2, 2, 2]], task="multiclass")
    assert multiclass["accuracy"] == pytest.approx(0.75)
    assert multiclass["micro_f1"] == pytest.approx(0.75)
    assert multiclass["macro_f1"] == pytest.approx((1.0 + 0.0 + 0.8) / 3)


def test_tune_thresholds_picks_best_f1():
    targets = np.array([[1, 0], [1, 0], [0, 0], [0, 0]])
    probs = np.array([[0.30, 0.9], [0.35, 0.1], [0.20, 0.2], [0.10, 0.3]])
    thresholds = tune_thresholds(targets, probs)
    # Label 0 is separated by any threshold in (0.20, 0.30]; among those 0.25 and 0.3 tie, 0.3 is nearer 0.5.
    assert thresholds[0] == pytest.approx(0.3)
    # Label 1 has no positives and keeps 0.5.
    assert thresholds[1] == pytest.approx(0.5)


# --- training ---------------------------------------------------------------


def _signal_and_noise(n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 3)) < 0.4).astype(np.float32)
    centres = rng.normal(size=(3, 16)) * 2.0
    signal = labels @ centres + rng.normal(scale=0.3, size=(n, 16))
    noise = rng.normal(size=(n, 16))
    return {"signal": signal.astype(np.float32), "noise": noise.astype(np.float32)}, labels


@pytest.mark.parametrize("method", ["gated", "attention"])
def test_fusion_downweights_noise_modality(method):
    features, labels = _signal_and_noise()
    result = fit_fusion(
        features, labels, method=method, fusion_dim=16, batch_size=32, lr=3e-3,
        max_epochs=15, patience=15, seed=0, modality_dropout=0.0,
    )
    weights = result.mean_weights
    assert weights["signal"] > weights["noise"] + 0.1
    assert result.metrics["micro_f1"] > 0.8
    assert len(result.history) == 15
    assert result.history["val_loss"].notna().all()
    assert result.history["train_loss"].iloc[-1] < result.history["train_loss"].iloc[0]


def test_fit_fusion_with_mask_and_item_ids():
    features, labels = _signal_and_noise(n=120)
    mask = {"noise": np.arange(120) % 3 != 0}
    features["noise"][~mask["noise"]] = np.nan
    ids = [f"视频{i}" for i in range(120)]
    result = fit_fusion(features, labels, method="weighted", mask=mask, item_ids=ids, max_epochs=2, seed=1)
    assert list(result.weights.columns) == ["signal", "noise"]
    assert result.weights.index.name == COL_ITEM
    assert all(i.startswith("视频") for i in result.weights.index)
    missing_rows = [f"视频{i}" for i in result.split["test"] if i % 3 == 0]
    assert result.weights.loc[missing_rows, "noise"].isna().all()
    assert result.thresholds.shape == (3,)


def test_fit_fusion_rejects_nan_in_present_rows():
    features, labels = _signal_and_noise(n=30)
    features["noise"][4, 2] = np.nan
    with pytest.raises(DataError, match=r"features\['noise'\] row 4 contains NaN or inf but is marked present"):
        fit_fusion(features, labels, max_epochs=1)


def test_fit_fusion_rejects_items_without_modalities():
    features, labels = _signal_and_noise(n=30)
    none = np.ones(30, dtype=bool)
    none[[3, 7]] = False
    with pytest.raises(DataError, match=r"rows \[3, 7\] \(2 in all\) have every modality masked"):
        fit_fusion(features, labels, mask={"signal": none, "noise": none}, max_epochs=1)


def test_fit_fusion_rejects_misaligned_rows():
    features, labels = _signal_and_noise(n=30)
    features["noise"] = features["noise"][:20]
    with pytest.raises(DataError, match=r"features\['noise'\] has 20 rows; expected 30 like features\['signal'\]"):
        fit_fusion(features, labels, max_epochs=1)
    features, labels = _signal_and_noise(n=30)
    with pytest.raises(DataError, match="labels have 29 rows; expected 30"):
        fit_fusion(features, labels[:29], max_epochs=1)


def test_fit_fusion_multiclass():
    features, labels = _signal_and_noise(n=150)
    classes = labels.argmax(axis=1).astype(np.int64)
    result = fit_fusion(features, classes, task="multiclass", method="attention", max_epochs=3, seed=2)
    assert result.thresholds is None
    assert result.model.head.out_features == 3
    assert 0.0 <= result.metrics["accuracy"] <= 1.0


def test_compare_fusion_methods_table():
    features, labels = _signal_and_noise(n=90)
    table, results = compare_fusion_methods(features, labels, max_epochs=1, seed=0, fast_dev_run=True, return_results=True)
    assert table["method"].tolist() == list(FUSION_METHODS)
    expected_columns = {"micro_f1", "macro_f1", "accuracy", "train_time_s", "epochs", "weight_signal", "weight_noise"}
    assert expected_columns <= set(table.columns)
    concat = table.set_index("method").loc["concat"]
    assert np.isnan(concat["weight_signal"])
    gated = table.set_index("method").loc["gated"]
    assert gated["weight_signal"] + gated["weight_noise"] == pytest.approx(1.0, abs=1e-5)
    assert set(results) == set(FUSION_METHODS)
    assert results["gated"].metrics["micro_f1"] == gated["micro_f1"]
    with pytest.raises(ValueError, match="unknown method 'sum'"):
        compare_fusion_methods(features, labels, methods=["sum"])


def test_fusion_model_logs_losses():
    model = FusionModel({"a": 3, "b": 2}, 4, method="concat", fusion_dim=None)
    assert model.hparams.method == "concat"
    logits, weights = model({"a": torch.randn(2, 3), "b": torch.randn(2, 2)})
    assert logits.shape == (2, 4)
    assert weights is None


def test_plot_modality_weights_skips_concat():
    import matplotlib

    matplotlib.use("Agg")
    table = pd.DataFrame(
        {
            "method": ["concat", "gated", "attention"],
            "weight_text": [np.nan, 0.7, 0.6],
            "weight_视频": [np.nan, 0.3, 0.4],
        }
    )
    ax = plot_modality_weights(table)
    heights = sorted(round(patch.get_height(), 3) for patch in ax.patches)
    assert heights == [0.3, 0.4, 0.6, 0.7]
    assert [label.get_text() for label in ax.get_xticklabels()] == ["gated", "attention"]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["text", "视频"]
    with pytest.raises(DataError, match="no weight_<modality> columns"):
        plot_modality_weights(table[["method"]])
