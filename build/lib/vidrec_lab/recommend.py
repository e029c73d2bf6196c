"""The :class:`Recommender` interface and exact top-K retrieval.

Every model in the suite, from MostPopular to the two-tower network, is a
``Recommender``: ``fit(train)`` learns from an interaction table, ``score``
returns a dense user x item score matrix, and ``recommend`` returns the top-K
items per user with the user's seen items excluded. Scoring runs over users
in chunks, so memory stays bounded by ``chunk_size x n_items`` floats.

A model that reads a user's history at inference (EASE, ItemKNN, sequential
models) takes it from the ``history`` argument, so at test time it can be
given train plus validation interactions without being refitted.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from vidrec_lab.constants import COL_ITEM, COL_USER
from vidrec_lab.tables import DataError, require_columns

logger = logging.getLogger(__name__)

COL_SCORE = "score"
COL_RANK = "rank"

# Up to this many items a stable full sort is cheap (about 5 ms per 100 users at 2,000 items).
_FULL_SORT_MAX_COLUMNS = 50_000


def build_matrix(interactions: pd.DataFrame, user_ids: Sequence[str], item_index: dict[str, int]) -> sp.csr_matrix:
    """Return a binary users x items CSR matrix of ``interactions`` for the given users.

    Users without rows get empty rows; items outside ``item_index`` are
    ignored (they cannot be scored by a model that was not fitted on them).
    """
    user_pos = {u: i for i, u in enumerate(user_ids)}
    rows = interactions[COL_USER].astype(str).map(user_pos)
    cols = interactions[COL_ITEM].astype(str).map(item_index)
    keep = (rows.notna() & cols.notna()).to_numpy()
    r = rows.to_numpy()[keep].astype(np.int64)
    c = cols.to_numpy()[keep].astype(np.int64)
    matrix = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(user_ids), len(item_index)))
    matrix.data[:] = 1.0  # repeated events on one item count once
    return matrix


def topk_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Return the column indices of the ``k`` largest scores per row, best first.

    Ties are broken by the lower column index. Rows with fewer than ``k``
    finite scores still return ``k`` columns; callers drop the ``-inf`` ones.

    Note:
        Above ``_FULL_SORT_MAX_COLUMNS`` columns a partial sort is used, and a
        tie exactly at the k-th score is then broken by the partition order
        (deterministic for the same input, but not by column index).
    """
    n_rows, n_cols = scores.shape
    k = min(k, n_cols)
    if k <= 0:
        return np.zeros((n_rows, 0), dtype=np.int64)
    if n_cols <= _FULL_SORT_MAX_COLUMNS:
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (n_rows, k), unordered
    values = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -values), axis=1)
    return np.take_along_axis(part, order, axis=1)


class Recommender(ABC):
    """Base class: fit on interactions, score users against the catalog, return top-K.

    Subclasses implement :meth:`_fit` and :meth:`_score_matrix`. Fitted state
    ends in ``_``: ``item_ids_`` (the catalog, in score-column order),
    ``item_index_``, ``train_``.

    Args:
        chunk_size (int): Users scored per block in :meth:`recommend`.
    """

    name = "recommender"
    #: False for models that cannot score items without training interactions (ID-only models).
    scores_cold_items = False

    def __init__(self, *, chunk_size: int = 1024):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer; got {chunk_size}")
        self.chunk_size = chunk_size

    def fit(self, train: pd.DataFrame, items: pd.DataFrame | None = None) -> "Recommender":
        """Fit on ``train`` interactions; ``items`` fixes the catalog (default: items in ``train``)."""
        require_columns(train, [COL_USER, COL_ITEM], where=f"{type(self).__name__}.fit(train)")
        if len(train) == 0:
            raise DataError(f"{type(self).__name__}.fit: the training table is empty")
        if items is not None:
            require_columns(items, [COL_ITEM], where=f"{type(self).__name__}.fit(items)")
            item_ids = items[COL_ITEM].astype(str).tolist()
        else:
            item_ids = sorted(train[COL_ITEM].astype(str).unique())
        self.item_ids_ = list(item_ids)
        self.item_index_ = {item: i for i, item in enumerate(self.item_ids_)}
        self.train_ = train
        self.train_items_ = np.zeros(len(self.item_ids_), dtype=bool)
        self.train_items_[train[COL_ITEM].astype(str).map(self.item_index_).dropna().astype(int).to_numpy()] = True
        self._fit(train)
        logger.info(
            "fitted %s on %d interactions, %d users, %d items",
            self.name,
            len(train),
            train[COL_USER].nunique(),
            len(self.item_ids_),
        )
        return self

    @abstractmethod
    def _fit(self, train: pd.DataFrame) -> None:
        """Learn parameters from ``train``; ``item_index_`` is set."""

    @abstractmethod
    def _score_matrix(self, user_ids: list[str], history: sp.csr_matrix) -> np.ndarray:
        """Return scores (n_users, n_items) given the users' history rows (binary CSR)."""

    def _check_fitted(self) -> None:
        if not hasattr(self, "item_ids_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(train) first")

    def score(self, users: Sequence[str], items: Sequence[str] | None = None, *, history: pd.DataFrame | None = None) -> np.ndarray:
        """Return a (len(users), n_items) float32 score matrix.

        Args:
            users (sequence of str): User ids; unknown users get an empty history.
            items (sequence of str, optional): Columns to return, in this order
                (default: the whole catalog ``item_ids_``).
            history (pandas.DataFrame, optional): Interactions the model may
                read at inference; default the training table.
        """
        self._check_fitted()
        users = [str(u) for u in users]
        history_table = self.train_ if history is None else history
        matrix = build_matrix(history_table, users, self.item_index_)
        scores = np.asarray(self._score_matrix(users, matrix), dtype=np.float32)
        if items is None:
            return scores
        columns = [self.item_index_.get(str(i)) for i in items]
        unknown = [i for i, c in zip(items, columns) if c is None]
        if unknown:
            raise KeyError(f"{self.name}.score: {len(unknown)} item ids are not in the catalog, e.g. {unknown[:3]}")
        return scores[:, columns]

    def recommend(
        self,
        users: Sequence[str],
        k: int = 10,
        *,
        exclude_seen: bool = True,
        history: pd.DataFrame | None = None,
        candidates: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Return the top-``k`` items per user as a table (user_id, item_id, score, rank).

        Args:
            users (sequence of str): Users to recommend for.
            k (int): List length.
            exclude_seen (bool): Drop items in the user's ``history``.
            history (pandas.DataFrame, optional): What the model reads and what
                counts as seen; default the training table.
            candidates (sequence of str, optional): Restrict ranking to these
                items (e.g. the cold items of a cold-start split).

        Returns:
            pandas.DataFrame: ``rank`` starts at 1. A user may get fewer than
            ``k`` rows when fewer items are left to rank.
        """
        self._check_fitted()
        if k < 1:
            raise ValueError(f"k must be a positive integer; got {k}")
        users = [str(u) for u in users]
        history_table = self.train_ if history is None else history
        allowed = None
        if candidates is not None:
            allowed = np.zeros(len(self.item_ids_), dtype=bool)
            idx = [self.item_index_.get(str(i)) for i in candidates]
            missing = [c for c, i in zip(candidates, idx) if i is None]
            if missing:
                raise KeyError(f"{self.name}.recommend: {len(missing)} candidate items are not in the catalog, e.g. {missing[:3]}")
            allowed[idx] = True
        frames = []
        for start in range(0, len(users), self.chunk_size):
            chunk = users[start : start + self.chunk_size]
            seen = build_matrix(history_table, chunk, self.item_index_)
            scores = np.asarray(self._score_matrix(chunk, seen), dtype=np.float64)  # (chunk, n_items)
            if exclude_seen:
                rows, cols = seen.nonzero()
                scores[rows, cols] = -np.inf
            if allowed is not None:
                scores[:, ~allowed] = -np.inf
            top = topk_indices(scores, k)  # (chunk, k)
            top_scores = np.take_along_axis(scores, top, axis=1)
            frame = pd.DataFrame(
                {
                    COL_USER: np.repeat(chunk, top.shape[1]),
                    COL_ITEM: np.asarray(self.item_ids_, dtype=object)[top.ravel()],
                    COL_SCORE: top_scores.ravel(),
                    COL_RANK: np.tile(np.arange(1, top.shape[1] + 1), len(chunk)),
                }
            )
            frames.append(frame[np.isfinite(frame[COL_SCORE].to_numpy())])
        if not frames:
            return pd.DataFrame(columns=[COL_USER, COL_ITEM, COL_SCORE, COL_RANK])
        return pd.concat(frames, ignore_index=True)
