"""Tables and figures for the fusion and fine-tuning notebooks (03 and 04).

Missing modalities:

* :func:`assemble_modalities` aligns per-modality vectors, each known for
  some items only, on one list of items: absent rows become NaN with the mask
  set to False, never zeros that look like data.
* :func:`fusion_weight_table` runs a fusion module on such a table and
  returns each item's modality weights.
* :func:`masked_input_effect` replaces every masked row with random values
  and measures how much the fused vectors move (0 when masking works).

Scores and training: :func:`plot_score_bars`, :func:`plot_weight_distributions`,
:func:`plot_learning_curves` and :func:`finetune_comparison_table`.

Plot functions take an ``Axes`` (or create one with
:func:`vidrec_lab.viz.new_axes`) and return it.
"""

from __future__ import annotations

import logging
import math
import textwrap
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from vidrec_lab.constants import COL_ITEM, DEFAULT_SEED
from vidrec_lab.tables import DataError
from vidrec_lab.viz import PALETTE, bar_compare, new_axes

logger = logging.getLogger(__name__)

# Axis and legend labels of score and curve columns.
SCORE_LABELS = {
    "micro_f1": "micro-F1",
    "macro_f1": "macro-F1",
    "accuracy": "subset accuracy",
    "subset_accuracy": "subset accuracy",
    "train_loss": "train loss",
    "val_loss": "validation loss",
    "val_micro_f1": "validation micro-F1 (threshold 0.5)",
    "val_macro_f1": "validation macro-F1 (threshold 0.5)",
}


# ---------------------------------------------------------------------------- missing modalities


@dataclass
class ModalityTable:
    """Per-modality item vectors aligned on one list of items, with availability masks.

    Attributes:
        item_ids (list of str): Row labels, shared by every modality.
        features (dict of str to numpy.ndarray): float32 (n_items, dim) per
            modality; rows of items without the modality are NaN.
        mask (dict of str to numpy.ndarray): bool (n_items,) per modality;
            True where the item has a vector.
    """

    item_ids: list[str]
    features: dict[str, np.ndarray]
    mask: dict[str, np.ndarray]

    def availability(self) -> pd.DataFrame:
        """Return a bool table: items as rows, modalities as columns, True where present."""
        return pd.DataFrame(self.mask, index=pd.Index(self.item_ids, name=COL_ITEM))


def assemble_modalities(
    item_ids: Sequence,
    vectors: Mapping[str, pd.DataFrame],
    *,
    dims: Mapping[str, int] | None = None,
) -> ModalityTable:
    """Align per-modality vectors on ``item_ids``, marking the items a modality lacks.

    Args:
        item_ids (sequence): Items in row order (converted to str, must be unique).
        vectors (dict of str to pandas.DataFrame): Per modality, one row per
            item that has it, indexed by item id. Ids that are not in
            ``item_ids`` are ignored. An empty frame (no item has the
            modality) needs its size in ``dims``.
        dims (dict of str to int, optional): Vector size of a modality, checked
            against its frame's columns. Required for modalities given as an empty frame.

    Returns:
        ModalityTable: NaN rows and ``mask=False`` where an item has no vector.

    Raises:
        DataError: On repeated item ids, a frame with repeated ids, a size
            that disagrees with ``dims``, or a present vector with NaN or infinity.
    """
    ids = [str(i) for i in item_ids]
    repeated = pd.Index(ids)[pd.Index(ids).duplicated()]
    if len(repeated):
        raise DataError(f"assemble_modalities: item id {repeated[0]!r} is listed more than once; item ids must be unique")
    if not isinstance(vectors, Mapping) or not vectors:
        raise DataError(f"assemble_modalities: vectors must be a non-empty dict of modality -> DataFrame; got {type(vectors).__name__}")
    dims = dict(dims or {})
    unknown = [name for name in dims if name not in vectors]
    if unknown:
        raise DataError(f"assemble_modalities: dims names modality {unknown[0]!r}, which is not in vectors {list(vectors)}")

    features, mask = {}, {}
    for name, frame in vectors.items():
        if not isinstance(frame, pd.DataFrame):
            raise DataError(f"assemble_modalities: vectors[{name!r}] is a {type(frame).__name__}; expected a DataFrame indexed by item id")
        frame = frame.set_axis(frame.index.astype(str), axis=0)
        if frame.index.duplicated().any():
            raise DataError(f"assemble_modalities: vectors[{name!r}] has item id {frame.index[frame.index.duplicated()][0]!r} more than once")
        if len(frame) == 0:
            if name not in dims:
                raise DataError(f"assemble_modalities: vectors[{name!r}] is empty, so its size is unknown; pass it in dims")
            values = np.full((len(ids), int(dims[name])), np.nan, dtype=np.float32)
        else:
            if name in dims and dims[name] != frame.shape[1]:
                raise DataError(f"assemble_modalities: vectors[{name!r}] has {frame.shape[1]} columns; expected {dims[name]} as given in dims")
            values = frame.reindex(ids).to_numpy(dtype=np.float32)
        present = np.asarray(pd.Index(ids).isin(frame.index), dtype=bool)
        bad = present & ~np.isfinite(values).all(axis=1)
        if bad.any():
            raise DataError(
                f"assemble_modalities: vectors[{name!r}] row for item {ids[int(np.flatnonzero(bad)[0])]!r} contains NaN or "
                "infinity; leave items without a vector out of the frame instead"
            )
        features[name] = values
        mask[name] = present
    return ModalityTable(ids, features, mask)


def _fuse(fusion, table: ModalityTable, features: Mapping[str, np.ndarray]):
    import torch

    names = list(fusion.modalities)
    missing = [name for name in names if name not in table.features]
    if missing:
        raise DataError(f"the fusion module expects modality {missing[0]!r}; the table has {list(table.features)}")
    inputs = {name: torch.from_numpy(np.nan_to_num(features[name], nan=0.0)) for name in names}
    masks = {name: torch.from_numpy(table.mask[name]) for name in names}
    was_training = fusion.training
    fusion.eval()
    try:
        with torch.no_grad():
            return fusion(inputs, masks)
    finally:
        fusion.train(was_training)


def fusion_weight_table(fusion, table: ModalityTable) -> pd.DataFrame:
    """Run a fusion module (in eval mode) on a modality table and return each item's weights.

    Args:
        fusion (torch.nn.Module): A weighted, gated or attention module from
            :mod:`vidrec_lab.fusion` whose modalities are all in ``table``.
        table (ModalityTable): From :func:`assemble_modalities`.

    Returns:
        pandas.DataFrame: Items as rows, the module's modalities as columns;
        each row sums to 1 and masked modalities have weight 0.

    Raises:
        DataError: If the module has no weights (concat fusion) or a modality is missing from the table.
    """
    out = _fuse(fusion, table, table.features)
    if out.weights is None:
        raise DataError(f"{type(fusion).__name__} has no per-modality weights; use a weighted, gated or attention module")
    return pd.DataFrame(out.weights.numpy(), index=pd.Index(table.item_ids, name=COL_ITEM), columns=list(fusion.modalities))


def masked_input_effect(fusion, table: ModalityTable, *, seed: int = DEFAULT_SEED, scale: float = 100.0) -> float:
    """Return the largest change of any fused value when every masked row is replaced by random values.

    A module that honours the mask ignores what a masked row contains, so the
    result is 0.0. A module that treats masked rows as data gives a large number.

    Args:
        fusion (torch.nn.Module): A fusion module from :mod:`vidrec_lab.fusion`.
        table (ModalityTable): From :func:`assemble_modalities`.
        seed (int): Seed of the random replacement values.
        scale (float): Standard deviation of the replacement values.

    Returns:
        float: Maximum absolute difference between the fused vectors of both runs.
    """
    rng = np.random.default_rng(seed)
    scrambled = {}
    for name, values in table.features.items():
        noise = (rng.standard_normal(values.shape) * scale).astype(np.float32)
        scrambled[name] = np.where(table.mask[name][:, None], values, noise)
    first = _fuse(fusion, table, table.features).fused
    second = _fuse(fusion, table, scrambled).fused
    return float((first - second).abs().max())


# ---------------------------------------------------------------------------- scores and weights


def plot_score_bars(
    table: pd.DataFrame,
    *,
    index: str = "method",
    metrics: Sequence[str] = ("micro_f1", "macro_f1"),
    ax=None,
    title: str | None = None,
    annotate: bool = True,
):
    """Draw one group of bars per row of ``table`` (a method or model), one bar per metric.

    Args:
        table (pandas.DataFrame): One row per method with the column ``index`` and the metric columns.
        index (str): Column that names each row.
        metrics (sequence of str): Score columns to draw.
        ax (matplotlib.axes.Axes, optional): Where to draw; default a new figure.
        title (str, optional): Axes title.
        annotate (bool): Write each value above its bar (only with 8 bars or fewer).

    Returns:
        matplotlib.axes.Axes: The axes drawn on.

    Raises:
        DataError: If a column is missing.
    """
    missing = [c for c in (index, *metrics) if c not in table.columns]
    if missing:
        raise DataError(f"plot_score_bars(table): missing column(s) {missing}; found {list(table.columns)}")
    values = table.set_index(index)[list(metrics)].astype(float)
    values.columns = [SCORE_LABELS.get(c, c) for c in metrics]
    ax = bar_compare(values, ax=ax, title=title, ylabel="score on test items")
    # Value labels of more than 8 bars overlap at paper-column width, so they are left to the table.
    if annotate and values.size <= 8:
        for container in ax.containers:
            ax.bar_label(container, fmt="%.2f", fontsize=5, padding=1)
    if len(values) > 3:
        for label in ax.get_xticklabels():
            label.set_rotation(30)
            label.set_horizontalalignment("right")
    else:
        # Long names of two or three models are wrapped so that neighbouring labels do not overlap.
        ax.set_xticks(ax.get_xticks(), [textwrap.fill(str(name), 18) for name in values.index])
    # Headroom above the tallest bar for the value labels.
    ax.set_ylim(0, min(1.05, max(0.1, float(np.nanmax(values.to_numpy())) * 1.15)))
    if len(metrics) > 1:
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xlabel(index)
    return ax


def plot_weight_distributions(weights: Mapping[str, pd.DataFrame], *, ax=None, title: str | None = "Per-item modality weights (test items)"):
    """Draw box plots of per-item modality weights, one group per method.

    Each box shows the weights one method gave one modality over the items
    that have it (NaN entries, the items without the modality, are left out).
    Weighted-sum fusion gives every item the same weights, so its boxes are flat lines.

    Args:
        weights (dict of str to pandas.DataFrame): Method name to a table of
            per-item weights (columns: modalities), e.g. ``FusionResult.weights``.
            Methods mapped to None (concat) are skipped.
        ax (matplotlib.axes.Axes, optional): Where to draw; default a new figure.
        title (str, optional): Axes title.

    Returns:
        matplotlib.axes.Axes: The axes drawn on.

    Raises:
        DataError: If no method has weights.
    """
    with_weights = {method: table for method, table in weights.items() if table is not None}
    if not with_weights:
        raise DataError(f"plot_weight_distributions: none of the methods {list(weights)} has per-item weights")
    modalities = list(dict.fromkeys(name for table in with_weights.values() for name in table.columns))
    if ax is None:
        _, ax = new_axes()
    width = 0.8 / len(modalities)
    for j, name in enumerate(modalities):
        colour = PALETTE[j % len(PALETTE)]
        data, positions = [], []
        for i, table in enumerate(with_weights.values()):
            if name in table.columns:
                data.append(table[name].dropna().to_numpy())
                positions.append(i - 0.4 + width * (j + 0.5))
        ax.boxplot(
            data, positions=positions, widths=width * 0.85, patch_artist=True, showfliers=True,
            boxprops={"facecolor": colour, "edgecolor": colour, "alpha": 0.6},
            medianprops={"color": "black", "lw": 0.8}, whiskerprops={"color": colour}, capprops={"color": colour},
            flierprops={"marker": ".", "markersize": 2, "markerfacecolor": colour, "markeredgecolor": colour},
        )
        ax.plot([], [], color=colour, lw=4, alpha=0.6, label=name)
    ax.set_xticks(range(len(with_weights)))
    ax.set_xticklabels(list(with_weights))
    ax.set_xlim(-0.6, len(with_weights) - 0.4)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("fusion method")
    ax.set_ylabel("weight")
    ax.legend(frameon=False, title="modality", title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        ax.set_title(title)
    return ax


# ---------------------------------------------------------------------------- fine-tuning


def plot_learning_curves(
    history: pd.DataFrame,
    columns: Sequence[str] = ("train_loss", "val_loss"),
    *,
    ax=None,
    ylabel: str | None = "loss",
    title: str | None = None,
):
    """Plot per-epoch values (losses or validation scores) against the epoch.

    Args:
        history (pandas.DataFrame): One row per epoch with an ``epoch`` column,
            e.g. ``FineTuneResult.history`` or ``MLMResult.history``.
        columns (sequence of str): Columns to draw; those absent from
            ``history`` are skipped (a one-batch smoke run logs none).
        ax (matplotlib.axes.Axes, optional): Where to draw; default a new figure.
        ylabel (str, optional): Y-axis label.
        title (str, optional): Axes title.

    Returns:
        matplotlib.axes.Axes: The axes drawn on. Without any logged value, a
        note in the middle of the axes replaces the empty frame.

    Raises:
        DataError: If ``history`` has no ``epoch`` column.
    """
    if "epoch" not in history.columns:
        raise DataError(f"plot_learning_curves(history): missing column 'epoch'; found {list(history.columns)}")
    if ax is None:
        _, ax = new_axes()
    drawn = 0
    for colour, column in zip(PALETTE, columns):
        if column not in history.columns:
            continue
        rows = history[["epoch", column]].dropna()
        if rows.empty:
            continue
        # Epochs count from 1 on the axis, as a reader counts them.
        ax.plot(rows["epoch"] + 1, rows[column], marker="o", ms=3, lw=1.2, color=colour, label=SCORE_LABELS.get(column, column))
        drawn += 1
    if drawn:
        ax.legend(frameon=False)
        ax.xaxis.get_major_locator().set_params(integer=True)
    else:
        ax.text(0.5, 0.5, "no epoch was logged\n(one-batch smoke run)", ha="center", va="center", transform=ax.transAxes, fontsize=7)
    ax.set_xlabel("epoch")
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return ax


def finetune_comparison_table(frozen_metrics: Mapping[str, float], finetuned_metrics: Mapping[str, float]) -> pd.DataFrame:
    """Put the frozen-encoder reference and the fine-tuned model side by side on the same test items.

    Args:
        frozen_metrics (dict): ``FrozenReferenceResult.metrics``: ``micro_f1``,
            ``macro_f1``, ``accuracy``, ``embed_time_s``, ``fit_time_s``.
        finetuned_metrics (dict): ``FineTuneResult.metrics``: ``micro_f1``,
            ``macro_f1``, ``accuracy``, ``train_time_s``, ``epochs``.

    Returns:
        pandas.DataFrame: One row per model with ``model``, ``micro_f1``,
        ``macro_f1``, ``subset_accuracy`` (every label of an item right) and
        ``train_time_s``. The frozen reference's time is embedding plus fitting,
        the fine-tuned model's is the Trainer's fit (all epochs, validation included).

    Raises:
        DataError: If a metric is missing.
    """
    required = {
        "frozen encoder + logistic regression": ("micro_f1", "macro_f1", "accuracy", "embed_time_s", "fit_time_s"),
        "fine-tuned encoder": ("micro_f1", "macro_f1", "accuracy", "train_time_s"),
    }
    rows = []
    for (model, keys), metrics in zip(required.items(), (frozen_metrics, finetuned_metrics)):
        missing = [k for k in keys if k not in metrics]
        if missing:
            raise DataError(f"finetune_comparison_table: metrics of {model!r} lack {missing}; found {sorted(metrics)}")
        seconds = metrics["train_time_s"] if "train_time_s" in keys else metrics["embed_time_s"] + metrics["fit_time_s"]
        rows.append(
            {
                "model": model,
                "micro_f1": float(metrics["micro_f1"]),
                "macro_f1": float(metrics["macro_f1"]),
                "subset_accuracy": float(metrics["accuracy"]),
                "train_time_s": round(float(seconds), 2) if not math.isnan(float(seconds)) else math.nan,
            }
        )
    return pd.DataFrame(rows)


__all__ = [
    "SCORE_LABELS",
    "ModalityTable",
    "assemble_modalities",
    "fusion_weight_table",
    "masked_input_effect",
    "plot_score_bars",
    "plot_weight_distributions",
    "plot_learning_curves",
    "finetune_comparison_table",
]
