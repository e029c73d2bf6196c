"""Fuse per-modality item vectors into one vector, and train fusion on a labelled task.

Every fusion module shares one interface::

    fusion = GatedFusion({"text": 384, "video": 512}, out_dim=64)
    out = fusion(features, mask)   # features: {name: (B, d_m)}, mask: {name: (B,) bool}
    out.fused                      # (B, out_dim)
    out.weights                    # (B, M) per-modality weights, or None

* :class:`ConcatFusion`: early fusion, concatenation of LayerNorm- (or L2-)
  normalised vectors with an optional linear projection;
* :class:`WeightedSumFusion`: each modality projected to ``out_dim``, then a
  weighted sum with fixed weights or learned ones (softmax over logits);
* :class:`GatedFusion`: like the weighted sum, but the weights are a gate
  computed per item from all projected vectors (a gated multimodal unit);
* :class:`AttentionFusion`: the modalities are tokens (plus a learned modality
  embedding) and a learned query token attends over them.

Missing modalities. ``mask[name][i] = False`` marks item ``i`` as having no
vector for that modality. Its input row is ignored, so it may contain zeros or
NaN. Weighted, gated and attention fusion give it weight exactly 0 and spread
the weight over the modalities present. Concat fusion puts a learned
"missing" embedding in its slot. An item with every modality masked raises
``ValueError``, because there is nothing to fuse, so drop such items first.

Modality dropout (``modality_dropout=p``) masks each present modality of each
item with probability ``p`` in training mode, and always keeps at least one.
It draws from PyTorch's global generator, like :class:`torch.nn.Dropout`.

The second half of the module trains a fusion module on a downstream task
(:class:`FusionModel`, :func:`fit_fusion`, :func:`compare_fusion_methods`).
It also holds the label, split and metric helpers that
:mod:`vidrec_lab.models.finetune` uses, so both notebooks score the same way.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Mapping, NamedTuple, Sequence

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from vidrec_lab.constants import COL_GENRES, COL_ITEM, DEFAULT_SEED
from vidrec_lab.tables import DataError, require_columns

logger = logging.getLogger(__name__)

TASKS = ("multilabel", "multiclass")
CONCAT_NORMS = ("layernorm", "l2")
SPLIT_NAMES = ("train", "val", "test")
# Per-label decision thresholds are searched on this grid (see tune_thresholds).
THRESHOLD_GRID = np.round(np.linspace(0.05, 0.95, 19), 2)


class FusionOutput(NamedTuple):
    """Output of a fusion module: fused vectors and per-modality weights.

    Attributes:
        fused (torch.Tensor): Fused item vectors, shape (B, out_dim).
        weights (torch.Tensor or None): Per-modality weights, shape (B, M),
            in the order of ``modality_dims``. Each row sums to 1 over the
            modalities present and is 0 on masked ones. None for concat fusion,
            which has no weights.
    """

    fused: Tensor
    weights: Tensor | None


# ---------------------------------------------------------------------------
# Fusion modules


def _check_modality_dims(modality_dims: Mapping[str, int], owner: str) -> dict[str, int]:
    if not isinstance(modality_dims, Mapping) or len(modality_dims) == 0:
        raise ValueError(f"{owner}: modality_dims must be a non-empty dict of name -> size; got {modality_dims!r}")
    checked = {}
    for name, dim in modality_dims.items():
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"{owner}: modality name {name!r} is invalid; use a non-empty string without '.'")
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"{owner}: modality {name!r} has size {dim!r}; expected a positive integer")
        checked[name] = int(dim)
    return checked


def _check_positive_int(value, name: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer; got {value!r}")
    return int(value)


def _check_probability(value, name: str, owner: str) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{owner}: {name} must be a probability in [0, 1); got {value!r}")
    return float(value)


def _masked_softmax(logits: Tensor, available: Tensor) -> Tensor:
    """Softmax over dim 1 that gives exactly 0 to unavailable entries (each row has one available)."""
    return torch.softmax(logits.masked_fill(~available, float("-inf")), dim=1)


class _Fusion(nn.Module):
    """Input checks, masking and modality dropout shared by every fusion module."""

    def __init__(self, modality_dims: Mapping[str, int], *, modality_dropout: float = 0.0) -> None:
        super().__init__()
        owner = type(self).__name__
        self.modality_dims = _check_modality_dims(modality_dims, owner)
        self.modalities = tuple(self.modality_dims)
        self.modality_dropout = _check_probability(modality_dropout, "modality_dropout", owner)

    @property
    def n_modalities(self) -> int:
        return len(self.modalities)

    def _parameter_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _prepare(self, features: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None) -> tuple[list[Tensor], Tensor]:
        """Check the inputs and return the feature list (masked rows zeroed) and availability (B, M)."""
        owner = type(self).__name__
        if not isinstance(features, Mapping):
            raise TypeError(f"{owner}: features must be a dict of modality name -> tensor; got {type(features).__name__}")
        unknown = [name for name in features if name not in self.modality_dims]
        if unknown:
            raise ValueError(f"{owner}: unknown modality {unknown[0]!r}; expected modalities {list(self.modalities)}")
        missing = [name for name in self.modalities if name not in features]
        if missing:
            raise ValueError(
                f"{owner}: modality {missing[0]!r} is missing from features; expected {list(self.modalities)}. "
                "For items that lack it, pass any tensor of the right shape and mask it out with mask[name]"
            )

        dtype = self._parameter_dtype()
        batch_size = None
        first_name = self.modalities[0]
        xs = []
        for name in self.modalities:
            x = features[name]
            expected = self.modality_dims[name]
            if not isinstance(x, Tensor):
                raise TypeError(f"{owner}: modality {name!r} must be a torch.Tensor; got {type(x).__name__}")
            if x.ndim != 2 or x.shape[1] != expected:
                raise ValueError(
                    f"{owner}: modality {name!r} has shape {tuple(x.shape)}; expected (batch, {expected})"
                )
            if not x.is_floating_point():
                raise TypeError(f"{owner}: modality {name!r} has dtype {x.dtype}; expected a floating-point tensor")
            if batch_size is None:
                batch_size = x.shape[0]
            elif x.shape[0] != batch_size:
                raise ValueError(
                    f"{owner}: modality {name!r} has batch size {x.shape[0]}; expected {batch_size} like {first_name!r}"
                )
            xs.append(x.to(dtype))

        available = self._availability(mask, batch_size, xs[0].device)
        empty = ~available.any(dim=1)
        if empty.any():
            rows = torch.nonzero(empty).flatten().tolist()
            raise ValueError(
                f"{owner}: batch row(s) {rows[:10]} have every modality masked; fusion needs at least one "
                "modality per item, so drop these items before fusing"
            )
        if self.training and self.modality_dropout > 0:
            available = self._drop_modalities(available)
        # Masked rows are replaced by zeros so that NaN placeholders never reach the arithmetic.
        # Every module then gives them zero weight or a learned "missing" embedding.
        xs = [torch.where(available[:, i : i + 1], x, torch.zeros((), dtype=x.dtype, device=x.device)) for i, x in enumerate(xs)]
        return xs, available

    def _availability(self, mask: Mapping[str, Tensor] | None, batch_size: int, device) -> Tensor:
        owner = type(self).__name__
        available = torch.ones(batch_size, self.n_modalities, dtype=torch.bool, device=device)  # (B, M)
        if mask is None:
            return available
        if not isinstance(mask, Mapping):
            raise TypeError(f"{owner}: mask must be a dict of modality name -> bool tensor; got {type(mask).__name__}")
        for name, values in mask.items():
            if name not in self.modality_dims:
                raise ValueError(f"{owner}: mask names unknown modality {name!r}; expected modalities {list(self.modalities)}")
            if not isinstance(values, Tensor) or values.dtype != torch.bool or tuple(values.shape) != (batch_size,):
                shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
                dtype = values.dtype if isinstance(values, Tensor) else None
                raise ValueError(
                    f"{owner}: mask for modality {name!r} has shape {shape} and dtype {dtype}; "
                    f"expected a torch.bool tensor of shape ({batch_size},)"
                )
            available[:, self.modalities.index(name)] = values.to(device)
        return available

    def _drop_modalities(self, available: Tensor) -> Tensor:
        drop = torch.rand(available.shape, device=available.device) < self.modality_dropout
        kept = available & ~drop
        emptied = ~kept.any(dim=1)
        if emptied.any():
            # Give back one randomly chosen present modality to every item that lost all of them.
            scores = torch.rand(available.shape, device=available.device).masked_fill(~available, -1.0)
            restore = F.one_hot(scores.argmax(dim=1), self.n_modalities).bool() & emptied[:, None]
            kept = kept | restore
        return kept


def _projections(modality_dims: Mapping[str, int], out_dim: int) -> nn.ModuleDict:
    # LayerNorm first so that modalities on different scales start on an equal footing.
    return nn.ModuleDict(
        {name: nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, out_dim)) for name, dim in modality_dims.items()}
    )


class ConcatFusion(_Fusion):
    """Early fusion: concatenate per-modality normalised vectors, then optionally project.

    Each modality is normalised on its own before concatenation, so a
    modality with large values or many dimensions does not dominate. With
    ``norm="layernorm"`` (default) a learnable LayerNorm does this, which
    keeps the per-dimension contrast and learns a scale per modality. With
    ``norm="l2"`` each vector is scaled to unit length, which drops its norm. A masked
    modality gets a learned "missing" embedding of its own (one per modality)
    in its slot, which the downstream layers can tell apart from data.

    Args:
        modality_dims (dict of str to int): Input size of each modality, in order.
        out_dim (int, optional): Size of a linear projection of the
            concatenation. None keeps the concatenation (``sum(modality_dims)``).
        norm (str): ``"layernorm"`` or ``"l2"``.
        modality_dropout (float): Probability of masking a present modality of an item in training.
    """

    def __init__(self, modality_dims: Mapping[str, int], out_dim: int | None = None, *, norm: str = "layernorm", modality_dropout: float = 0.0) -> None:
        super().__init__(modality_dims, modality_dropout=modality_dropout)
        if norm not in CONCAT_NORMS:
            raise ValueError(f"ConcatFusion: norm must be one of {list(CONCAT_NORMS)}; got {norm!r}")
        self.norm = norm
        if norm == "layernorm":
            self.norms = nn.ModuleDict({name: nn.LayerNorm(dim) for name, dim in self.modality_dims.items()})
        self.missing_embeddings = nn.ParameterDict(
            {name: nn.Parameter(torch.randn(dim) * 0.02) for name, dim in self.modality_dims.items()}
        )
        concat_dim = sum(self.modality_dims.values())
        if out_dim is None:
            self.projection = None
            self.out_dim = concat_dim
        else:
            self.out_dim = _check_positive_int(out_dim, "out_dim", "ConcatFusion")
            self.projection = nn.Linear(concat_dim, self.out_dim)

    def forward(self, features: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None = None) -> FusionOutput:
        xs, available = self._prepare(features, mask)
        parts = []
        for i, (name, x) in enumerate(zip(self.modalities, xs)):
            h = self.norms[name](x) if self.norm == "layernorm" else F.normalize(x, dim=1)  # (B, d_m)
            h = torch.where(available[:, i : i + 1], h, self.missing_embeddings[name].expand_as(h))
            parts.append(h)
        fused = torch.cat(parts, dim=1)  # (B, sum d_m)
        if self.projection is not None:
            fused = self.projection(fused)  # (B, out_dim)
        return FusionOutput(fused, None)


class WeightedSumFusion(_Fusion):
    """Project each modality to ``out_dim`` and take a weighted sum.

    The weights are the same for every item: fixed when ``weights`` is given
    (normalised to sum to 1), else learned as a softmax over one logit per
    modality (starting equal). A masked modality's weight is set to 0 and the
    others are renormalised for that item.

    Args:
        modality_dims (dict of str to int): Input size of each modality, in order.
        out_dim (int): Shared size the modalities are projected to.
        weights (dict of str to float, optional): Fixed positive weight per
            modality (every modality named). None learns them.
        modality_dropout (float): Probability of masking a present modality of an item in training.
    """

    def __init__(self, modality_dims: Mapping[str, int], out_dim: int, *, weights: Mapping[str, float] | None = None, modality_dropout: float = 0.0) -> None:
        super().__init__(modality_dims, modality_dropout=modality_dropout)
        self.out_dim = _check_positive_int(out_dim, "out_dim", "WeightedSumFusion")
        self.projections = _projections(self.modality_dims, self.out_dim)
        self.learn_weights = weights is None
        if weights is None:
            self.weight_logits = nn.Parameter(torch.zeros(self.n_modalities))
        else:
            self.register_buffer("weight_logits", torch.log(self._fixed_weights(weights)))

    def _fixed_weights(self, weights: Mapping[str, float]) -> Tensor:
        if not isinstance(weights, Mapping) or set(weights) != set(self.modalities):
            names = list(weights) if isinstance(weights, Mapping) else weights
            raise ValueError(
                f"WeightedSumFusion: weights must name exactly the modalities {list(self.modalities)}; got {names!r}"
            )
        values = torch.tensor([float(weights[name]) for name in self.modalities])
        bad = [name for name in self.modalities if not math.isfinite(float(weights[name])) or float(weights[name]) <= 0]
        if bad:
            raise ValueError(
                f"WeightedSumFusion: weight of modality {bad[0]!r} is {weights[bad[0]]!r}; expected a positive number "
                "(to switch a modality off, leave it out of modality_dims)"
            )
        return values / values.sum()

    def forward(self, features: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None = None) -> FusionOutput:
        xs, available = self._prepare(features, mask)
        h = torch.stack([self.projections[name](x) for name, x in zip(self.modalities, xs)], dim=1)  # (B, M, D)
        logits = self.weight_logits.expand(h.shape[0], -1)  # (B, M)
        weights = _masked_softmax(logits, available)  # (B, M)
        fused = (weights.unsqueeze(-1) * h).sum(dim=1)  # (B, D)
        return FusionOutput(fused, weights)


class GatedFusion(_Fusion):
    """Gated multimodal unit: a per-item softmax gate over projected modalities.

    Each modality becomes ``h_m = tanh(W_m LayerNorm(x_m))``. A linear gate
    reads the concatenation of all ``h_m`` (zeros for masked modalities) plus
    the availability indicators and outputs one logit per modality. The
    softmax over the present modalities gives the item's weights, and the
    fused vector is ``sum_m w_m h_m``.

    Args:
        modality_dims (dict of str to int): Input size of each modality, in order.
        out_dim (int): Shared size the modalities are projected to.
        modality_dropout (float): Probability of masking a present modality of an item in training.
    """

    def __init__(self, modality_dims: Mapping[str, int], out_dim: int, *, modality_dropout: float = 0.0) -> None:
        super().__init__(modality_dims, modality_dropout=modality_dropout)
        self.out_dim = _check_positive_int(out_dim, "out_dim", "GatedFusion")
        self.projections = _projections(self.modality_dims, self.out_dim)
        self.gate = nn.Linear(self.n_modalities * self.out_dim + self.n_modalities, self.n_modalities)

    def forward(self, features: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None = None) -> FusionOutput:
        xs, available = self._prepare(features, mask)
        h = torch.stack([torch.tanh(self.projections[name](x)) for name, x in zip(self.modalities, xs)], dim=1)  # (B, M, D)
        h = h * available.unsqueeze(-1).to(h.dtype)  # masked modalities contribute nothing to the gate input
        gate_input = torch.cat([h.flatten(1), available.to(h.dtype)], dim=1)  # (B, M*D + M)
        weights = _masked_softmax(self.gate(gate_input), available)  # (B, M)
        fused = (weights.unsqueeze(-1) * h).sum(dim=1)  # (B, D)
        return FusionOutput(fused, weights)


class AttentionFusion(_Fusion):
    """Attention pooling over modality tokens with a learned query.

    Each modality is projected to ``out_dim`` and a learned modality
    embedding is added, giving M tokens per item. One
    :class:`torch.nn.MultiheadAttention` layer lets a learned query token
    attend over them, masked modalities excluded through
    ``key_padding_mask``. The fused vector is the LayerNorm of the attention
    output, and the weights are the query's attention over the modalities
    (averaged over heads).

    Args:
        modality_dims (dict of str to int): Input size of each modality, in order.
        out_dim (int): Token size; must be divisible by ``num_heads``.
        num_heads (int): Attention heads.
        dropout (float): Dropout on the attention weights.
        modality_dropout (float): Probability of masking a present modality of an item in training.
    """

    def __init__(self, modality_dims: Mapping[str, int], out_dim: int, *, num_heads: int = 1, dropout: float = 0.0, modality_dropout: float = 0.0) -> None:
        super().__init__(modality_dims, modality_dropout=modality_dropout)
        self.out_dim = _check_positive_int(out_dim, "out_dim", "AttentionFusion")
        num_heads = _check_positive_int(num_heads, "num_heads", "AttentionFusion")
        if self.out_dim % num_heads:
            raise ValueError(f"AttentionFusion: out_dim {self.out_dim} is not divisible by num_heads {num_heads}")
        self.projections = _projections(self.modality_dims, self.out_dim)
        self.modality_embeddings = nn.Parameter(torch.randn(self.n_modalities, self.out_dim) * 0.02)
        self.query = nn.Parameter(torch.randn(1, 1, self.out_dim) * 0.02)
        self.attention = nn.MultiheadAttention(
            self.out_dim, num_heads, dropout=_check_probability(dropout, "dropout", "AttentionFusion"), batch_first=True
        )
        self.out_norm = nn.LayerNorm(self.out_dim)

    def forward(self, features: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None = None) -> FusionOutput:
        xs, available = self._prepare(features, mask)
        tokens = torch.stack([self.projections[name](x) for name, x in zip(self.modalities, xs)], dim=1)  # (B, M, D)
        tokens = tokens + self.modality_embeddings  # (B, M, D)
        query = self.query.expand(tokens.shape[0], -1, -1)  # (B, 1, D)
        attended, attention = self.attention(
            query, tokens, tokens, key_padding_mask=~available, need_weights=True, average_attn_weights=True
        )  # (B, 1, D), (B, 1, M)
        fused = self.out_norm(attended.squeeze(1))  # (B, D)
        return FusionOutput(fused, attention.squeeze(1))


FUSION_METHODS: dict[str, type[_Fusion]] = {
    "concat": ConcatFusion,
    "weighted": WeightedSumFusion,
    "gated": GatedFusion,
    "attention": AttentionFusion,
}


def make_fusion(method: str, modality_dims: Mapping[str, int], out_dim: int | None, **kwargs) -> _Fusion:
    """Build the fusion module called ``method`` (a key of :data:`FUSION_METHODS`).

    Args:
        method (str): ``"concat"``, ``"weighted"``, ``"gated"`` or ``"attention"``.
        modality_dims (dict of str to int): Input size of each modality, in order.
        out_dim (int or None): Output size (None only for concat: no projection).
        **kwargs: Passed to the module (``modality_dropout``, ``norm``, ``num_heads``, ...).

    Returns:
        torch.nn.Module: The fusion module.
    """
    if method not in FUSION_METHODS:
        raise ValueError(f"fusion method must be one of {list(FUSION_METHODS)}; got {method!r}")
    if out_dim is None and method != "concat":
        raise ValueError(f"fusion method {method!r} needs an out_dim; only 'concat' can keep the concatenation size")
    return FUSION_METHODS[method](modality_dims, out_dim, **kwargs)


# ---------------------------------------------------------------------------
# Labels, splits and metrics (shared with vidrec_lab.models.finetune)


def multi_hot(label_lists: Sequence[Sequence[str]], *, classes: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Encode lists of labels (genres, tags) as a multi-hot matrix.

    Args:
        label_lists (sequence of sequences of str): Labels of each item.
        classes (sequence of str, optional): Label order; default the sorted
            set of labels seen. A label not in ``classes`` raises.

    Returns:
        tuple: ``(Y, classes)`` with ``Y`` a float32 array of shape (N, L).
    """
    if classes is None:
        classes = sorted({str(label) for labels in label_lists for label in labels})
    classes = [str(c) for c in classes]
    index = {label: j for j, label in enumerate(classes)}
    y = np.zeros((len(label_lists), len(classes)), dtype=np.float32)
    for i, labels in enumerate(label_lists):
        for label in labels:
            if str(label) not in index:
                raise DataError(f"row {i} has label {label!r}, which is not among the classes {classes}")
            y[i, index[str(label)]] = 1.0
    return y, classes


def genre_labels(items: pd.DataFrame, *, col_genres: str = COL_GENRES, min_count: int = 1) -> tuple[np.ndarray, list[str]]:
    """Return the multi-hot genre matrix of an item table and the genre names.

    Args:
        items (pandas.DataFrame): Item table with a list-of-str genres column.
        col_genres (str): Name of that column.
        min_count (int): Genres on fewer items are left out (rare labels make
            F1 noisy).

    Returns:
        tuple: ``(Y, genres)``, ``Y`` float32 of shape (n_items, n_genres).
    """
    require_columns(items, [col_genres], where="genre_labels(items)")
    lists = [list(value) if isinstance(value, (list, tuple, np.ndarray)) else [] for value in items[col_genres]]
    counts = pd.Series([g for genres in lists for g in genres], dtype=object).value_counts()
    kept = sorted(str(g) for g, n in counts.items() if n >= min_count)
    if not kept:
        raise DataError(f"genre_labels(items): no genre in column {col_genres!r} occurs on {min_count} or more items")
    kept_set = set(kept)
    return multi_hot([[g for g in genres if g in kept_set] for genres in lists], classes=kept)


def split_items(item_ids: Sequence, *, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = DEFAULT_SEED) -> dict[str, np.ndarray]:
    """Split rows into train/val/test by item with a seeded permutation.

    Rows that share an item id always land in the same split.

    Args:
        item_ids (sequence): Item id of each row.
        val_fraction, test_fraction (float): Share of distinct items held out
            for validation and test (each at least one item when positive).
        seed (int): Seed of the permutation.

    Returns:
        dict: ``{"train", "val", "test"}`` -> sorted row indices (int64 arrays).
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"split_items: {name} must be in [0, 1); got {value!r}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"split_items: val_fraction + test_fraction must be below 1; got {val_fraction} + {test_fraction}")
    codes, unique = pd.factorize(pd.Series(list(item_ids), dtype=object).astype(str))
    n_items = len(unique)
    n_val = int(math.ceil(val_fraction * n_items)) if val_fraction > 0 else 0
    n_test = int(math.ceil(test_fraction * n_items)) if test_fraction > 0 else 0
    if n_items - n_val - n_test < 1:
        raise ValueError(
            f"split_items: {n_items} distinct items leave none for training after {n_val} validation "
            f"and {n_test} test items; use more items or smaller fractions"
        )
    order = np.random.default_rng(seed).permutation(n_items)
    part = np.empty(n_items, dtype=np.int64)
    part[order[:n_test]] = 2
    part[order[n_test : n_test + n_val]] = 1
    part[order[n_test + n_val :]] = 0
    row_part = part[codes]
    return {name: np.flatnonzero(row_part == k).astype(np.int64) for k, name in enumerate(SPLIT_NAMES)}


def check_task(task: str) -> str:
    """Return ``task`` if it is one of :data:`TASKS`, else raise ValueError."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}; got {task!r}")
    return task


def check_labels(labels, task: str, n_rows: int, *, where: str) -> np.ndarray:
    """Return labels as float32 multi-hot (N, L) or int64 class ids (N,), checked against ``task``."""
    check_task(task)
    labels = np.asarray(labels)
    if labels.shape[0] != n_rows:
        raise DataError(f"{where}: labels have {labels.shape[0]} rows; expected {n_rows}, one per item")
    if task == "multilabel":
        if labels.ndim != 2:
            raise DataError(f"{where}: multilabel labels must be a 2-D multi-hot array (items, labels); got shape {labels.shape}")
        bad = ~np.isin(labels, (0, 1))
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            raise DataError(f"{where}: labels[{row}, {col}] is {labels[row, col].item()!r}; multi-hot labels must be 0 or 1")
        return labels.astype(np.float32)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: multiclass labels must be a 1-D integer array of class ids; got shape {labels.shape}, dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise DataError(f"{where}: class id {labels.min().item()} is negative; class ids start at 0")
    return labels.astype(np.int64)


def tune_thresholds(targets: np.ndarray, probs: np.ndarray, *, grid: Sequence[float] = THRESHOLD_GRID) -> np.ndarray:
    """Pick one decision threshold per label that maximises that label's F1.

    Ties go to the threshold nearest 0.5. A label without positives in
    ``targets`` keeps 0.5, because its F1 is 0 for every threshold.

    Args:
        targets (numpy.ndarray): Multi-hot validation labels, shape (N, L).
        probs (numpy.ndarray): Predicted probabilities, shape (N, L).
        grid (sequence of float): Candidate thresholds.

    Returns:
        numpy.ndarray: Thresholds, shape (L,).
    """
    targets = np.asarray(targets) > 0.5
    probs = np.asarray(probs)
    if targets.shape != probs.shape or targets.ndim != 2:
        raise ValueError(f"tune_thresholds: targets {targets.shape} and probs {probs.shape} must have the same 2-D shape")
    grid = np.asarray(grid, dtype=np.float64)
    thresholds = np.full(targets.shape[1], 0.5)
    for j in range(targets.shape[1]):
        if not targets[:, j].any():
            continue
        predicted = probs[:, j][None, :] >= grid[:, None]  # (G, N)
        tp = (predicted & targets[:, j]).sum(axis=1)
        f1 = 2 * tp / (predicted.sum(axis=1) + targets[:, j].sum())
        best = np.flatnonzero(f1 == f1.max())
        thresholds[j] = grid[best[np.argmin(np.abs(grid[best] - 0.5))]]
    return thresholds


def classification_metrics(targets: np.ndarray, scores: np.ndarray, *, task: str, thresholds: float | np.ndarray = 0.5) -> dict[str, float]:
    """Score predictions with micro-F1, macro-F1 and accuracy.

    For ``multilabel``, ``scores`` are probabilities (N, L), and a label is
    predicted when its probability is at least its threshold. There
    ``accuracy`` is the exact-match (subset) accuracy. For ``multiclass``, ``scores`` are
    (N, C) probabilities or logits and the prediction is the argmax. Labels
    with neither true nor predicted positives are left out of the macro
    average instead of counting as 0.

    Args:
        targets (numpy.ndarray): Multi-hot (N, L) or class ids (N,).
        scores (numpy.ndarray): Scores, shape (N, L) or (N, C).
        task (str): ``"multilabel"`` or ``"multiclass"``.
        thresholds (float or numpy.ndarray): One threshold or one per label (multilabel only).

    Returns:
        dict: ``micro_f1``, ``macro_f1``, ``accuracy`` (floats).
    """
    check_task(task)
    scores = np.asarray(scores)
    if task == "multilabel":
        truth = np.asarray(targets) > 0.5
        predicted = scores >= np.asarray(thresholds)
    else:
        truth = np.asarray(targets)
        predicted = scores.argmax(axis=1)
    return {
        "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0.0)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=np.nan)),
        "accuracy": float(accuracy_score(truth, predicted)),
    }


def scores_from_logits(logits: np.ndarray | Tensor, task: str) -> np.ndarray:
    """Turn logits into probabilities: sigmoid for multilabel, softmax for multiclass."""
    logits = torch.as_tensor(np.asarray(logits) if not isinstance(logits, Tensor) else logits).float()
    probs = torch.sigmoid(logits) if check_task(task) == "multilabel" else torch.softmax(logits, dim=1)
    return probs.numpy()


# ---------------------------------------------------------------------------
# Training a fusion module on a downstream task


class FusionModel(L.LightningModule):
    """A fusion module plus a linear classification head, trained with Lightning.

    Multi-label tasks (genres) use ``BCEWithLogitsLoss``, multi-class tasks
    cross-entropy. Batches are ``(features, mask, targets)`` with ``features``
    and ``mask`` dicts keyed by modality name.

    Args:
        modality_dims (dict of str to int): Input size of each modality, in order.
        n_labels (int): Number of labels (multilabel) or classes (multiclass).
        method (str): Fusion method, a key of :data:`FUSION_METHODS`.
        task (str): ``"multilabel"`` or ``"multiclass"``.
        fusion_dim (int or None): Fusion output size (None: plain concatenation, concat only).
        modality_dropout (float): Modality dropout probability in training.
        lr (float): AdamW learning rate.
        weight_decay (float): AdamW weight decay.
        fusion_kwargs (dict, optional): Extra arguments of the fusion module.
    """

    def __init__(
        self,
        modality_dims: Mapping[str, int],
        n_labels: int,
        *,
        method: str = "gated",
        task: str = "multilabel",
        fusion_dim: int | None = 64,
        modality_dropout: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        fusion_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        check_task(task)
        self.save_hyperparameters()
        self.modality_dims = dict(modality_dims)
        self.fusion = make_fusion(method, modality_dims, fusion_dim, modality_dropout=modality_dropout, **(fusion_kwargs or {}))
        self.head = nn.Linear(self.fusion.out_dim, _check_positive_int(n_labels, "n_labels", "FusionModel"))
        self.loss_fn = nn.BCEWithLogitsLoss() if task == "multilabel" else nn.CrossEntropyLoss()

    def forward(self, features: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None = None) -> tuple[Tensor, Tensor | None]:
        """Return logits (B, n_labels) and the fusion weights (B, M) or None."""
        out = self.fusion(features, mask)
        return self.head(out.fused), out.weights

    def _shared_step(self, batch, stage: str) -> Tensor:
        features, mask, targets = batch
        logits, _ = self(features, mask)
        loss = self.loss_fn(logits, targets)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=stage != "train", batch_size=targets.shape[0])
        return loss

    def training_step(self, batch, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")

    def predict_step(self, batch, batch_idx: int) -> tuple[Tensor, Tensor | None]:
        features, mask, _ = batch
        return self(features, mask)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


class _FusionDataset(Dataset):
    """Rows of per-modality features, availability masks and targets."""

    def __init__(self, features: dict[str, Tensor], mask: dict[str, Tensor], targets: Tensor, rows: np.ndarray) -> None:
        self.features = {name: x[rows] for name, x in features.items()}
        self.mask = {name: m[rows] for name, m in mask.items()}
        self.targets = targets[rows]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return (
            {name: x[i] for name, x in self.features.items()},
            {name: m[i] for name, m in self.mask.items()},
            self.targets[i],
        )


class _TrainingRecorder(L.Callback):
    """Record per-epoch losses and keep a copy of the weights with the best ``val_loss``."""

    def __init__(self) -> None:
        self.history: list[dict] = []
        self.best_loss = math.inf
        self.best_state: dict | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch}
        for key in ("train_loss", "val_loss"):
            row[key] = float(metrics[key]) if key in metrics else math.nan
        self.history.append(row)
        if row["val_loss"] < self.best_loss:
            self.best_loss = row["val_loss"]
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in pl_module.state_dict().items()})


@dataclass
class FusionResult:
    """A fitted fusion model and how it scored on the held-out test items.

    Attributes:
        method (str): Fusion method.
        model (FusionModel): The model with the weights of its best validation epoch.
        metrics (dict): ``micro_f1``, ``macro_f1``, ``accuracy`` on test, ``train_time_s``, ``epochs``.
        weights (pandas.DataFrame or None): Per-item modality weights on the
            test items (index: item id, columns: modalities); None for concat.
        history (pandas.DataFrame): ``epoch``, ``train_loss``, ``val_loss``.
        thresholds (numpy.ndarray or None): Per-label thresholds (multilabel).
        split (dict): Row indices of ``train``, ``val`` and ``test``.
    """

    method: str
    model: FusionModel
    metrics: dict
    weights: pd.DataFrame | None
    history: pd.DataFrame
    thresholds: np.ndarray | None
    split: dict = field(repr=False)

    @property
    def mean_weights(self) -> dict[str, float]:
        """Mean test weight per modality over the items that have it (NaN for concat)."""
        if self.weights is None:
            return {name: math.nan for name in self.model.modality_dims}
        return {name: float(self.weights[name].mean()) for name in self.weights.columns}


def _as_feature_tensors(features: Mapping, mask: Mapping | None) -> tuple[dict[str, Tensor], dict[str, Tensor], int]:
    if not isinstance(features, Mapping) or not features:
        raise DataError(f"features must be a non-empty dict of modality name -> (items, dim) array; got {type(features).__name__}")
    n_rows = None
    tensors, masks = {}, {}
    for name, values in features.items():
        array = np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values, dtype=np.float32)
        if array.ndim != 2:
            raise DataError(f"features[{name!r}] has shape {array.shape}; expected (items, dim)")
        if n_rows is None:
            n_rows, first = array.shape[0], name
        elif array.shape[0] != n_rows:
            raise DataError(f"features[{name!r}] has {array.shape[0]} rows; expected {n_rows} like features[{first!r}]")
        present = np.ones(n_rows, dtype=bool)
        if mask is not None and name in mask:
            present = np.asarray(mask[name], dtype=bool)
            if present.shape != (n_rows,):
                raise DataError(f"mask[{name!r}] has shape {present.shape}; expected ({n_rows},)")
        bad = ~np.isfinite(array).all(axis=1) & present
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"features[{name!r}] row {row} contains NaN or inf but is marked present; "
                f"set mask[{name!r}][{row}] = False for items without this modality"
            )
        tensors[name] = torch.from_numpy(np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0))
        masks[name] = torch.from_numpy(present)
    if mask is not None:
        unknown = [name for name in mask if name not in features]
        if unknown:
            raise DataError(f"mask names modality {unknown[0]!r}, which is not in features {list(features)}")
    empty = ~torch.stack(list(masks.values()), dim=1).any(dim=1)
    if empty.any():
        rows = torch.nonzero(empty).flatten().tolist()
        raise DataError(f"rows {rows[:10]} ({len(rows)} in all) have every modality masked; drop these items before fusion")
    return tensors, masks, n_rows


def _predict_fusion(model: FusionModel, dataset: _FusionDataset, batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
    model.eval()
    logits, weights = [], []
    with torch.no_grad():
        for features, mask, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            batch_logits, batch_weights = model(features, mask)
            logits.append(batch_logits)
            if batch_weights is not None:
                weights.append(batch_weights)
    return torch.cat(logits).numpy(), (torch.cat(weights).numpy() if weights else None)


def fit_fusion(
    features: Mapping[str, np.ndarray],
    labels: np.ndarray,
    *,
    method: str = "gated",
    mask: Mapping[str, np.ndarray] | None = None,
    item_ids: Sequence | None = None,
    task: str = "multilabel",
    fusion_dim: int | None = 64,
    modality_dropout: float = 0.1,
    fusion_kwargs: dict | None = None,
    max_epochs: int = 30,
    patience: int = 5,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    threshold: str | float = "tuned",
    seed: int = DEFAULT_SEED,
    accelerator: str = "cpu",
    fast_dev_run: bool = False,
    enable_progress_bar: bool = False,
) -> FusionResult:
    """Train one fusion method with a linear head and score it on held-out items.

    The items are split into train/val/test by :func:`split_items`. Training
    stops early when ``val_loss`` has not improved for ``patience`` epochs and
    the weights of the best epoch are kept. For multi-label tasks, the
    decision rule is set by ``threshold``: ``"tuned"`` picks one threshold
    per label on the validation items (:func:`tune_thresholds`), a number
    uses that threshold for every label.

    Args:
        features (dict of str to array): Per-modality item vectors, (N, d_m) each, rows aligned.
        labels (numpy.ndarray): Multi-hot (N, L) for multilabel, class ids (N,) for multiclass.
        method (str): Fusion method, a key of :data:`FUSION_METHODS`.
        mask (dict of str to bool array, optional): ``False`` where an item lacks a modality.
        item_ids (sequence, optional): Item ids, for the split and the weight table; default row numbers.
        task (str): ``"multilabel"`` or ``"multiclass"``.
        fusion_dim (int or None): Fusion output size.
        modality_dropout (float): Modality dropout probability in training.
        fusion_kwargs (dict, optional): Extra arguments of the fusion module.
        max_epochs (int): Upper bound on epochs.
        patience (int): Early-stopping patience in epochs.
        batch_size (int): Items per batch.
        lr (float): AdamW learning rate.
        weight_decay (float): AdamW weight decay.
        val_fraction, test_fraction (float): Held-out item shares.
        threshold (str or float): ``"tuned"`` or a fixed threshold (multilabel only).
        seed (int): Seed of the split, the initial weights and the batch order.
        accelerator (str): Lightning accelerator (``"cpu"``, ``"gpu"``, ``"auto"``).
        fast_dev_run (bool): Run one batch per loop only (smoke profile).
        enable_progress_bar (bool): Show Lightning's progress bar.

    Returns:
        FusionResult: The model, test metrics, test weights and learning curve.
    """
    check_task(task)
    if not (threshold == "tuned" or isinstance(threshold, (int, float))):
        raise ValueError(f"fit_fusion: threshold must be 'tuned' or a number; got {threshold!r}")
    tensors, masks, n_rows = _as_feature_tensors(features, mask)
    labels = check_labels(labels, task, n_rows, where="fit_fusion")
    ids = np.arange(n_rows).astype(str) if item_ids is None else np.asarray([str(i) for i in item_ids], dtype=object)
    if len(ids) != n_rows:
        raise DataError(f"fit_fusion: item_ids has {len(ids)} entries; expected {n_rows}, one per feature row")
    split = split_items(ids, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    targets = torch.from_numpy(labels)
    datasets = {name: _FusionDataset(tensors, masks, targets, rows) for name, rows in split.items()}
    n_labels = labels.shape[1] if task == "multilabel" else int(labels.max()) + 1

    L.seed_everything(seed, workers=True, verbose=False)
    model = FusionModel(
        {name: x.shape[1] for name, x in tensors.items()},
        n_labels,
        method=method,
        task=task,
        fusion_dim=fusion_dim,
        modality_dropout=modality_dropout,
        lr=lr,
        weight_decay=weight_decay,
        fusion_kwargs=fusion_kwargs,
    )
    recorder = _TrainingRecorder()
    callbacks = [recorder, EarlyStopping(monitor="val_loss", patience=patience, mode="min")]
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=enable_progress_bar,
        deterministic=True,
        fast_dev_run=fast_dev_run,
        callbacks=callbacks,
    )
    train_loader = DataLoader(
        datasets["train"], batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    val_loader = DataLoader(datasets["val"], batch_size=batch_size, shuffle=False)
    started = time.perf_counter()
    trainer.fit(model, train_loader, val_loader)
    train_time = time.perf_counter() - started
    if recorder.best_state is not None:
        model.load_state_dict(recorder.best_state)
    model.cpu()

    # Score the test items with the same decision rule as the fine-tuning notebook.
    thresholds = None
    if task == "multilabel":
        if threshold == "tuned":
            val_logits, _ = _predict_fusion(model, datasets["val"], batch_size)
            thresholds = tune_thresholds(datasets["val"].targets.numpy(), scores_from_logits(val_logits, task))
        else:
            thresholds = np.full(n_labels, float(threshold))
    test_logits, test_weights = _predict_fusion(model, datasets["test"], batch_size)
    metrics = classification_metrics(
        datasets["test"].targets.numpy(), scores_from_logits(test_logits, task), task=task,
        thresholds=thresholds if thresholds is not None else 0.5,
    )
    metrics.update(train_time_s=round(train_time, 3), epochs=len(recorder.history))
    weights = None
    if test_weights is not None:
        test_ids = ids[split["test"]]
        weights = pd.DataFrame(test_weights, index=pd.Index(test_ids, name=COL_ITEM), columns=list(model.modality_dims))
        # Items without a modality carry weight 0 there by construction; leave them out of its mean.
        for name in weights.columns:
            weights.loc[~masks[name][split["test"]].numpy(), name] = np.nan
    logger.info("fusion %s: test micro-F1 %.3f, macro-F1 %.3f in %.1f s", method, metrics["micro_f1"], metrics["macro_f1"], train_time)
    return FusionResult(
        method=method,
        model=model,
        metrics=metrics,
        weights=weights,
        history=pd.DataFrame(recorder.history, columns=["epoch", "train_loss", "val_loss"]),
        thresholds=thresholds,
        split=split,
    )


def compare_fusion_methods(
    features: Mapping[str, np.ndarray],
    labels: np.ndarray,
    *,
    methods: Sequence[str] = tuple(FUSION_METHODS),
    return_results: bool = False,
    **fit_kwargs,
):
    """Fit each fusion method on the same split and tabulate test scores and modality weights.

    Args:
        features (dict of str to array): Per-modality item vectors, rows aligned.
        labels (numpy.ndarray): Multi-hot (N, L) or class ids (N,).
        methods (sequence of str): Fusion methods to compare.
        return_results (bool): Also return the fitted :class:`FusionResult` of each method.
        **fit_kwargs: Passed to :func:`fit_fusion` (``mask``, ``task``, ``seed``, ``max_epochs``, ...).

    Returns:
        pandas.DataFrame: One row per method with ``method``, ``micro_f1``,
        ``macro_f1``, ``accuracy``, ``train_time_s``, ``epochs`` and
        ``weight_<modality>`` (mean test weight; NaN for concat). With
        ``return_results``, the tuple ``(table, {method: FusionResult})``.
    """
    unknown = [m for m in methods if m not in FUSION_METHODS]
    if unknown:
        raise ValueError(f"compare_fusion_methods: unknown method {unknown[0]!r}; expected some of {list(FUSION_METHODS)}")
    rows, results = [], {}
    for method in methods:
        result = fit_fusion(features, labels, method=method, **fit_kwargs)
        results[method] = result
        row = {"method": method, **{k: result.metrics[k] for k in ("micro_f1", "macro_f1", "accuracy", "train_time_s", "epochs")}}
        row.update({f"weight_{name}": value for name, value in result.mean_weights.items()})
        rows.append(row)
    table = pd.DataFrame(rows)
    return (table, results) if return_results else table


def plot_modality_weights(table: pd.DataFrame, *, ax=None, title: str | None = "Mean modality weight on test items"):
    """Draw the ``weight_<modality>`` columns of :func:`compare_fusion_methods` as grouped bars.

    Methods without weights (concat) are left out. Returns the Axes.
    """
    from vidrec_lab.viz import bar_compare

    require_columns(table, ["method"], where="plot_modality_weights(table)")
    columns = [c for c in table.columns if c.startswith("weight_")]
    if not columns:
        raise DataError(f"plot_modality_weights(table): no weight_<modality> columns; found {list(table.columns)}")
    values = table.set_index("method")[columns].dropna(how="all")
    values.columns = [c.removeprefix("weight_") for c in columns]
    ax = bar_compare(values, ax=ax, title=title, ylabel="weight")
    ax.set_xlabel("fusion method")
    return ax
