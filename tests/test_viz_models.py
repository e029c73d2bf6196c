import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from vidrec_lab import viz
from vidrec_lab import viz_models as vm
from vidrec_lab.fusion import AttentionFusion, ConcatFusion, FusionOutput, GatedFusion, WeightedSumFusion
from vidrec_lab.tables import DataError


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _frames():
    text = pd.DataFrame([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], index=["a", "视频1", "c"])
    video = pd.DataFrame([[2.0, 2.0, 2.0]], index=["视频1"])
    return text, video


def _table():
    text, video = _frames()
    return vm.assemble_modalities(["a", "视频1", "c"], {"text": text, "video": video})


# ---------------------------------------------------------------------------- assemble_modalities


def test_assemble_aligns_rows_and_masks():
    text, video = _frames()
    table = vm.assemble_modalities(["c", "视频1", "a"], {"text": text, "video": video})
    assert table.item_ids == ["c", "视频1", "a"]
    np.testing.assert_array_equal(table.features["text"], [[0.5, 0.5], [0.0, 1.0], [1.0, 0.0]])
    assert table.mask["text"].tolist() == [True, True, True]
    assert table.mask["video"].tolist() == [False, True, False]
    np.testing.assert_array_equal(table.features["video"][1], [2.0, 2.0, 2.0])
    assert np.isnan(table.features["video"][[0, 2]]).all()
    assert table.features["video"].dtype == np.float32


def test_assemble_availability_keeps_chinese_ids():
    availability = _table().availability()
    assert availability.index.tolist() == ["a", "视频1", "c"]
    assert availability.loc["视频1"].tolist() == [True, True]
    assert availability["video"].sum() == 1


def test_assemble_ignores_ids_outside_the_list():
    text, _ = _frames()
    table = vm.assemble_modalities(["a"], {"text": text})
    np.testing.assert_array_equal(table.features["text"], [[1.0, 0.0]])


def test_assemble_empty_modality_uses_dims():
    text, _ = _frames()
    table = vm.assemble_modalities(["a", "c"], {"text": text, "audio": pd.DataFrame()}, dims={"audio": 4})
    assert table.features["audio"].shape == (2, 4)
    assert table.mask["audio"].tolist() == [False, False]


def test_assemble_converts_integer_ids_to_str():
    frame = pd.DataFrame([[1.0], [2.0]], index=[10, 20])
    table = vm.assemble_modalities([20, 10], {"x": frame})
    assert table.item_ids == ["20", "10"]
    np.testing.assert_array_equal(table.features["x"][:, 0], [2.0, 1.0])


def test_assemble_rejects_bad_input():
    text, video = _frames()
    with pytest.raises(DataError, match="item id 'a' is listed more than once"):
        vm.assemble_modalities(["a", "a"], {"text": text})
    with pytest.raises(DataError, match=r"vectors\['audio'\] is empty, so its size is unknown; pass it in dims"):
        vm.assemble_modalities(["a"], {"audio": pd.DataFrame()})
    with pytest.raises(DataError, match=r"vectors\['video'\] has 3 columns; expected 5 as given in dims"):
        vm.assemble_modalities(["a"], {"video": video}, dims={"video": 5})
    with pytest.raises(DataError, match="dims names modality 'audio', which is not in vectors"):
        vm.assemble_modalities(["a"], {"text": text}, dims={"audio": 2})
    with pytest.raises(DataError, match=r"vectors\['text'\] is a ndarray; expected a DataFrame"):
        vm.assemble_modalities(["a"], {"text": text.to_numpy()})
    with pytest.raises(DataError, match="non-empty dict"):
        vm.assemble_modalities(["a"], {})


def test_assemble_rejects_nan_in_present_row():
    frame = pd.DataFrame([[1.0, np.nan]], index=["视频1"])
    with pytest.raises(DataError, match=r"vectors\['text'\] row for item '视频1' contains NaN"):
        vm.assemble_modalities(["视频1"], {"text": frame})


def test_assemble_rejects_repeated_frame_ids():
    frame = pd.DataFrame([[1.0], [2.0]], index=["a", "a"])
    with pytest.raises(DataError, match=r"vectors\['text'\] has item id 'a' more than once"):
        vm.assemble_modalities(["a"], {"text": frame})


# ---------------------------------------------------------------------------- fusion weights and masks


def test_weight_table_gives_masked_modality_zero():
    table = _table()
    torch.manual_seed(0)
    fusion = GatedFusion({"text": 2, "video": 3}, out_dim=4)
    weights = vm.fusion_weight_table(fusion, table)
    assert weights.index.tolist() == ["a", "视频1", "c"]
    assert weights.columns.tolist() == ["text", "video"]
    assert weights.loc["a", "video"] == 0.0
    assert weights.loc["c", "video"] == 0.0
    assert weights.loc["a", "text"] == pytest.approx(1.0)
    assert weights.loc["视频1"].sum() == pytest.approx(1.0)
    assert 0.0 < weights.loc["视频1", "video"] < 1.0


def test_weight_table_restores_training_mode():
    fusion = WeightedSumFusion({"text": 2, "video": 3}, out_dim=4)
    fusion.train()
    vm.fusion_weight_table(fusion, _table())
    assert fusion.training


def test_weight_table_rejects_concat_and_missing_modality():
    with pytest.raises(DataError, match="ConcatFusion has no per-modality weights"):
        vm.fusion_weight_table(ConcatFusion({"text": 2, "video": 3}), _table())
    with pytest.raises(DataError, match="expects modality 'audio'"):
        vm.fusion_weight_table(GatedFusion({"text": 2, "audio": 3}, out_dim=4), _table())


@pytest.mark.parametrize("module", [
    ConcatFusion({"text": 2, "video": 3}, out_dim=4),
    WeightedSumFusion({"text": 2, "video": 3}, out_dim=4),
    GatedFusion({"text": 2, "video": 3}, out_dim=4),
    AttentionFusion({"text": 2, "video": 3}, out_dim=4),
])
def test_masked_input_effect_is_zero_for_fusion_modules(module):
    assert vm.masked_input_effect(module, _table(), seed=3) == 0.0


class _MaskBlindFusion(nn.Module):
    """Sums the first column of every modality and ignores the mask."""

    modalities = ("text", "video")

    def forward(self, features, mask=None):
        fused = sum(x[:, :1] for x in features.values())
        return FusionOutput(fused, None)


def test_masked_input_effect_detects_mask_blind_module():
    assert vm.masked_input_effect(_MaskBlindFusion(), _table(), seed=3) > 1.0


# ---------------------------------------------------------------------------- plots


def test_score_bars_draw_values():
    table = pd.DataFrame({"method": ["concat", "gated"], "micro_f1": [0.5, 0.25], "macro_f1": [0.4, 0.2]})
    fig, ax = viz.new_axes()
    vm.plot_score_bars(table, ax=ax)
    heights = [bar.get_height() for container in ax.containers for bar in container]
    assert heights == pytest.approx([0.5, 0.25, 0.4, 0.2])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["concat", "gated"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["micro-F1", "macro-F1"]
    matplotlib.pyplot.close(fig)


def test_score_bars_missing_column():
    with pytest.raises(DataError, match=r"missing column\(s\) \['macro_f1'\]"):
        vm.plot_score_bars(pd.DataFrame({"method": ["a"], "micro_f1": [0.1]}))


def test_weight_distributions_one_box_per_method_and_modality():
    weights = {
        "concat": None,
        "weighted": pd.DataFrame({"text": [0.6, 0.6], "noise": [0.4, 0.4]}),
        "gated": pd.DataFrame({"text": [0.9, np.nan, 0.7], "noise": [0.1, 1.0, 0.3]}),
    }
    fig, ax = viz.new_axes()
    vm.plot_weight_distributions(weights, ax=ax)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["weighted", "gated"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["text", "noise"]
    # Median lines are the black lines without markers (flier lines carry markers).
    medians = [line for line in ax.lines if line.get_color() == "black" and line.get_marker() in ("None", "")]
    assert len(medians) == 4
    # The gated text box leaves the NaN out: its median is that of 0.9 and 0.7.
    assert any(line.get_ydata()[0] == pytest.approx(0.8) for line in medians)
    matplotlib.pyplot.close(fig)


def test_weight_distributions_without_weights():
    with pytest.raises(DataError, match=r"none of the methods \['concat'\] has per-item weights"):
        vm.plot_weight_distributions({"concat": None})


def test_learning_curves_plot_epochs_from_one():
    history = pd.DataFrame({"epoch": [0, 1, 2], "train_loss": [0.9, 0.5, 0.4], "val_loss": [0.8, np.nan, 0.6]})
    fig, ax = viz.new_axes()
    vm.plot_learning_curves(history, ("train_loss", "val_loss", "val_micro_f1"), ax=ax)
    assert len(ax.lines) == 2
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), [1, 3])
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [0.8, 0.6])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train loss", "validation loss"]
    matplotlib.pyplot.close(fig)


def test_learning_curves_empty_history_says_so():
    fig, ax = viz.new_axes()
    vm.plot_learning_curves(pd.DataFrame(columns=["epoch", "train_loss", "val_loss"]), ax=ax)
    assert len(ax.lines) == 0
    assert "no epoch was logged" in ax.texts[0].get_text()
    matplotlib.pyplot.close(fig)
    with pytest.raises(DataError, match="missing column 'epoch'"):
        vm.plot_learning_curves(pd.DataFrame({"step": [1]}))


# ---------------------------------------------------------------------------- comparison table


def test_comparison_table_rows_and_times():
    frozen = {"micro_f1": 0.4, "macro_f1": 0.3, "accuracy": 0.1, "embed_time_s": 2.5, "fit_time_s": 1.25}
    tuned = {"micro_f1": 0.5, "macro_f1": 0.35, "accuracy": 0.2, "train_time_s": 60.0, "epochs": 4}
    table = vm.finetune_comparison_table(frozen, tuned)
    assert table["model"].tolist() == ["frozen encoder + logistic regression", "fine-tuned encoder"]
    assert table["micro_f1"].tolist() == [0.4, 0.5]
    assert table["macro_f1"].tolist() == [0.3, 0.35]
    assert table["subset_accuracy"].tolist() == [0.1, 0.2]
    assert table["train_time_s"].tolist() == [3.75, 60.0]


def test_comparison_table_missing_metric():
    frozen = {"micro_f1": 0.4, "macro_f1": 0.3, "accuracy": 0.1, "embed_time_s": 2.5}
    tuned = {"micro_f1": 0.5, "macro_f1": 0.35, "accuracy": 0.2, "train_time_s": 60.0}
    with pytest.raises(DataError, match=r"metrics of 'frozen encoder \+ logistic regression' lack \['fit_time_s'\]"):
        vm.finetune_comparison_table(frozen, tuned)
