"""Top-K retrieval from user and item embedding matrices, exact or through a FAISS index.

* :func:`exact_top_k` scores users against every item with one matrix
  product per chunk of users, so memory stays at ``chunk_size x n_items``
  floats, and sets each user's seen items (and non-candidates) to ``-inf``
  before taking the top K. Ties go to the lower item index.
* :class:`FaissIndex` is an inner-product index from ``faiss-cpu`` (optional:
  ``pip install faiss-cpu``) for catalogs too large for a dense score matrix.
  It fetches K plus at least the user's number of seen items and drops the seen ones,
  so with a flat index its lists match the exact ones up to the order of
  equal scores.
* :class:`EmbeddingRetriever` binds item ids to the vectors and returns a
  recommendation table (``user_id``, ``item_id``, ``score``, ``rank``). Items
  added after training (:meth:`EmbeddingRetriever.add_items`) are ranked like
  any other item from the vectors they are given, e.g. content-only vectors
  from the two-tower item tower.
* :func:`history_mean_vectors` builds user vectors as the mean of the vectors
  of the items in each user's history (the content baseline: cosine to the
  mean text embedding). Fallback policy for a user with an empty history: the
  popularity-weighted mean item vector when ``popularity`` is given, else the
  plain mean of all item vectors. Either way the user gets a ranking
  (popular-looking content first), cold items included.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from vidrec_lab.constants import COL_ITEM, COL_USER
from vidrec_lab.recommend import COL_RANK, COL_SCORE, build_matrix, topk_indices
from vidrec_lab.tables import DataError, require_columns

logger = logging.getLogger(__name__)

BACKENDS = ("exact", "faiss")


@dataclass
class TopK:
    """Top-K result: catalog indices and scores per user, best first.

    Attributes:
        indices (numpy.ndarray): (n_users, k) int64; ``-1`` where fewer than
            ``k`` items were left to rank.
        scores (numpy.ndarray): (n_users, k) float32; ``-inf`` at those slots.
    """

    indices: np.ndarray
    scores: np.ndarray


def _as_matrix(vectors, name: str) -> np.ndarray:
    matrix = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (rows, dim) matrix; got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        row = int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[0])
        raise ValueError(f"{name} has a NaN or infinite value in row {row}")
    return matrix


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")
    return int(k)


def as_exclusion_matrix(exclude, n_users: int, n_items: int) -> sp.csr_matrix | None:
    """Return ``exclude`` as a binary (n_users, n_items) CSR matrix, or None.

    Args:
        exclude: None, a scipy sparse matrix of that shape, or one sequence
            of catalog indices per user.
        n_users (int): Rows expected.
        n_items (int): Columns expected.
    """
    if exclude is None:
        return None
    if sp.issparse(exclude):
        matrix = sp.csr_matrix(exclude, dtype=np.float32)
        if matrix.shape != (n_users, n_items):
            raise ValueError(f"exclude has shape {matrix.shape}; expected ({n_users}, {n_items}), users x items")
        return matrix
    rows = list(exclude)
    if len(rows) != n_users:
        raise ValueError(f"exclude has {len(rows)} rows; expected one sequence of item indices per user ({n_users})")
    lengths = [len(r) for r in rows]
    columns = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows]) if rows else np.zeros(0, np.int64)
    if len(columns) and (columns.min() < 0 or columns.max() >= n_items):
        bad = int(columns[(columns < 0) | (columns >= n_items)][0])
        raise ValueError(f"exclude contains invalid item index {bad}; expected indices in [0, {n_items})")
    indptr = np.r_[0, np.cumsum(lengths)]
    matrix = sp.csr_matrix((np.ones(len(columns), np.float32), columns, indptr), shape=(n_users, n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def _candidate_mask(candidates, n_items: int) -> np.ndarray | None:
    if candidates is None:
        return None
    indices = np.asarray(candidates, dtype=np.int64)
    if len(indices) and (indices.min() < 0 or indices.max() >= n_items):
        raise ValueError(f"candidates must be item indices in [0, {n_items}); got {indices.min()}..{indices.max()}")
    allowed = np.zeros(n_items, dtype=bool)
    allowed[indices] = True
    return allowed


def exact_top_k(
    user_vectors,
    item_vectors,
    k: int,
    *,
    exclude=None,
    candidates: Sequence[int] | None = None,
    chunk_size: int = 1024,
) -> TopK:
    """Return the ``k`` highest inner-product items per user, seen items excluded.

    Args:
        user_vectors (array): (n_users, dim).
        item_vectors (array): (n_items, dim).
        k (int): List length.
        exclude (optional): Items not to return per user: a (n_users, n_items)
            sparse matrix or one sequence of item indices per user.
        candidates (sequence of int, optional): Rank only these item indices.
        chunk_size (int): Users per matrix product (memory: chunk_size x n_items floats).

    Returns:
        TopK: indices and scores, best first; ties go to the lower item index.
    """
    users = _as_matrix(user_vectors, "user_vectors")
    items = _as_matrix(item_vectors, "item_vectors")
    if users.shape[1] != items.shape[1]:
        raise ValueError(f"user_vectors have dim {users.shape[1]} but item_vectors have dim {items.shape[1]}")
    k = _check_k(k)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size}")
    n_users, n_items = len(users), len(items)
    seen = as_exclusion_matrix(exclude, n_users, n_items)
    allowed = _candidate_mask(candidates, n_items)
    width = min(k, n_items)
    out_indices = np.full((n_users, k), -1, dtype=np.int64)
    out_scores = np.full((n_users, k), -np.inf, dtype=np.float32)
    for start in range(0, n_users, chunk_size):
        stop = min(start + chunk_size, n_users)
        scores = users[start:stop] @ items.T  # (chunk, n_items)
        if seen is not None:
            rows, cols = seen[start:stop].nonzero()
            scores[rows, cols] = -np.inf
        if allowed is not None:
            scores[:, ~allowed] = -np.inf
        top = topk_indices(scores, width)  # (chunk, width)
        top_scores = np.take_along_axis(scores, top, axis=1)
        top = np.where(np.isfinite(top_scores), top, -1)
        out_indices[start:stop, :width] = top
        out_scores[start:stop, :width] = top_scores
    return TopK(out_indices, out_scores)


def _import_faiss():
    try:
        import faiss
    except ImportError as error:
        raise ImportError(
            "the FAISS backend needs the faiss-cpu package, which is not installed; "
            "install it with `pip install faiss-cpu` (or `pip install vidrec_lab[faiss]`), or use backend='exact'"
        ) from error
    return faiss


class FaissIndex:
    """Inner-product FAISS index over item vectors, with per-user exclusions.

    Args:
        item_vectors (array): (n_items, dim) vectors; row i gets id i.
        factory (str): FAISS index factory string. ``"Flat"`` (default) is
            exact; ``"IVF256,Flat"`` and similar are approximate and are
            trained on ``item_vectors``.
        nprobe (int): Inverted lists searched per query for IVF indexes.
    """

    def __init__(self, item_vectors, *, factory: str = "Flat", nprobe: int = 16) -> None:
        faiss = _import_faiss()
        items = _as_matrix(item_vectors, "item_vectors")
        self.dim = int(items.shape[1])
        self.factory = factory
        self.index = faiss.index_factory(self.dim, factory, faiss.METRIC_INNER_PRODUCT)
        if not self.index.is_trained:
            self.index.train(items)
        if hasattr(self.index, "nprobe"):
            self.index.nprobe = int(nprobe)
        self.index.add(items)

    @property
    def n_items(self) -> int:
        return int(self.index.ntotal)

    def add(self, item_vectors) -> None:
        """Append vectors; they get the next ids in order."""
        items = _as_matrix(item_vectors, "item_vectors")
        if items.shape[1] != self.dim:
            raise ValueError(f"item_vectors have dim {items.shape[1]}; the index has dim {self.dim}")
        self.index.add(items)

    def _search(self, users: np.ndarray, fetch: int, allowed: np.ndarray | None):
        if allowed is None:
            return self.index.search(users, fetch)
        faiss = _import_faiss()
        selector = faiss.IDSelectorBatch(np.flatnonzero(allowed).astype(np.int64))
        return self.index.search(users, fetch, params=faiss.SearchParameters(sel=selector))

    def search(self, user_vectors, k: int, *, exclude=None, candidates: Sequence[int] | None = None) -> TopK:
        """Return the top ``k`` items per user, excluding ``exclude`` (see :func:`exact_top_k`).

        Each user is searched for ``k`` plus at least their number of
        excluded items, so after dropping those the list is still ``k`` long
        when the catalog allows (an IVF index may return fewer). Within equal
        scores the order is FAISS's.
        """
        users = _as_matrix(user_vectors, "user_vectors")
        if users.shape[1] != self.dim:
            raise ValueError(f"user_vectors have dim {users.shape[1]}; the index has dim {self.dim}")
        k = _check_k(k)
        n_users, n_items = len(users), self.n_items
        seen = as_exclusion_matrix(exclude, n_users, n_items)
        allowed = _candidate_mask(candidates, n_items)
        n_seen = np.diff(seen.indptr) if seen is not None else np.zeros(n_users, dtype=np.int64)
        out_indices = np.full((n_users, k), -1, dtype=np.int64)
        out_scores = np.full((n_users, k), -np.inf, dtype=np.float32)
        # Users whose seen counts round up to the same power of two share one search call.
        budget = np.where(n_seen > 0, 2 ** np.ceil(np.log2(np.maximum(n_seen, 1))), 0).astype(np.int64)
        for extra in np.unique(budget):
            rows = np.flatnonzero(budget == extra)
            fetch = int(min(k + extra, n_items))
            scores, ids = self._search(users[rows], fetch, allowed)
            for position, row in enumerate(rows):
                keep = ids[position] >= 0
                if seen is not None:
                    excluded = seen.indices[seen.indptr[row] : seen.indptr[row + 1]]
                    keep &= ~np.isin(ids[position], excluded)
                found_ids = ids[position][keep][:k]
                out_indices[row, : len(found_ids)] = found_ids
                out_scores[row, : len(found_ids)] = scores[position][keep][:k]
        return TopK(out_indices, out_scores)


def history_mean_vectors(history, item_vectors, *, popularity=None, normalize: bool = True) -> np.ndarray:
    """Return one user vector per history row: the mean of the vectors of the items in it.

    Fallback policy for an empty history: the popularity-weighted mean of all
    item vectors when ``popularity`` is given, else the plain mean of all
    item vectors.

    Args:
        history: (n_users, n_items) sparse matrix or one sequence of item indices per user.
        item_vectors (array): (n_items, dim), e.g. L2-normalised text embeddings.
        popularity (array, optional): (n_items,) non-negative weights (training counts).
        normalize (bool): L2-normalise the result, so inner product ranks by cosine.

    Returns:
        numpy.ndarray: (n_users, dim) float32.
    """
    items = _as_matrix(item_vectors, "item_vectors")
    n_items = len(items)
    n_users = history.shape[0] if sp.issparse(history) else len(history)
    matrix = as_exclusion_matrix(history, n_users, n_items)
    counts = np.asarray(matrix.sum(axis=1)).ravel()
    users = np.asarray(matrix @ items) / np.maximum(counts, 1.0)[:, None]  # (n_users, dim)
    if popularity is not None:
        weights = np.asarray(popularity, dtype=np.float64)
        if weights.shape != (n_items,) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"popularity must be {n_items} non-negative weights with a positive sum; got shape {weights.shape}")
        fallback = (weights / weights.sum()) @ items
    else:
        fallback = items.mean(axis=0)
    users[counts == 0] = fallback
    if normalize:
        users = users / np.maximum(np.linalg.norm(users, axis=1, keepdims=True), 1e-12)
    return users.astype(np.float32)


class EmbeddingRetriever:
    """Recommend by inner product between user vectors and a catalog of item vectors with ids.

    Args:
        item_vectors (array): (n_items, dim).
        item_ids (sequence of str): Id of each row.
        backend (str): ``"exact"`` (chunked matrix product) or ``"faiss"``.
        chunk_size (int): Users per block for the exact backend.
        faiss_factory (str): Index factory string for the FAISS backend.
        nprobe (int): IVF lists searched per query (FAISS IVF indexes only).
    """

    def __init__(
        self,
        item_vectors,
        item_ids: Sequence[str],
        *,
        backend: str = "exact",
        chunk_size: int = 1024,
        faiss_factory: str = "Flat",
        nprobe: int = 16,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}; got {backend!r}")
        self.item_vectors = _as_matrix(item_vectors, "item_vectors")
        self.item_ids = [str(i) for i in item_ids]
        if len(self.item_ids) != len(self.item_vectors):
            raise ValueError(f"item_ids has {len(self.item_ids)} entries but item_vectors has {len(self.item_vectors)} rows")
        if len(set(self.item_ids)) != len(self.item_ids):
            raise DataError("EmbeddingRetriever: item ids must be unique")
        self.item_index = {item: i for i, item in enumerate(self.item_ids)}
        self.backend = backend
        self.chunk_size = int(chunk_size)
        self.index = FaissIndex(self.item_vectors, factory=faiss_factory, nprobe=nprobe) if backend == "faiss" else None

    @classmethod
    def from_model(cls, model, **kwargs) -> "EmbeddingRetriever":
        """Build a retriever over a fitted model's ``item_vectors()`` and ``item_ids_`` (e.g. a two-tower model)."""
        return cls(model.item_vectors(), model.item_ids_, **kwargs)

    def add_items(self, item_ids: Sequence[str], item_vectors) -> None:
        """Append items that arrived after training (their vectors must come from content alone)."""
        new_ids = [str(i) for i in item_ids]
        vectors = _as_matrix(item_vectors, "item_vectors")
        if len(new_ids) != len(vectors):
            raise ValueError(f"item_ids has {len(new_ids)} entries but item_vectors has {len(vectors)} rows")
        known = [i for i in new_ids if i in self.item_index]
        if known or len(set(new_ids)) != len(new_ids):
            raise DataError(f"EmbeddingRetriever.add_items: item {(known or new_ids)[0]!r} is already in the catalog or repeated")
        self.item_vectors = np.concatenate([self.item_vectors, vectors])
        for item in new_ids:
            self.item_index[item] = len(self.item_ids)
            self.item_ids.append(item)
        if self.index is not None:
            self.index.add(vectors)

    def search(self, user_vectors, k: int, *, exclude=None, candidates: Sequence[int] | None = None) -> TopK:
        """Return catalog indices and scores of the top ``k`` items per user (see :func:`exact_top_k`)."""
        if self.index is not None:
            return self.index.search(user_vectors, k, exclude=exclude, candidates=candidates)
        return exact_top_k(user_vectors, self.item_vectors, k, exclude=exclude, candidates=candidates, chunk_size=self.chunk_size)

    def recommend(
        self,
        user_ids: Sequence[str],
        user_vectors,
        k: int = 10,
        *,
        history: pd.DataFrame | None = None,
        candidates: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Return the top ``k`` items per user as a table (user_id, item_id, score, rank).

        Args:
            user_ids (sequence of str): One id per row of ``user_vectors``.
            user_vectors (array): (n_users, dim).
            k (int): List length.
            history (pandas.DataFrame, optional): Interactions whose items are
                excluded per user (items outside the catalog are ignored).
            candidates (sequence of str, optional): Rank only these item ids.

        Returns:
            pandas.DataFrame: ``rank`` starts at 1; a user gets fewer than
            ``k`` rows when fewer items are left.
        """
        user_ids = [str(u) for u in user_ids]
        users = _as_matrix(user_vectors, "user_vectors")
        if len(users) != len(user_ids):
            raise ValueError(f"user_ids has {len(user_ids)} entries but user_vectors has {len(users)} rows")
        exclude = None
        if history is not None:
            require_columns(history, [COL_USER, COL_ITEM], where="EmbeddingRetriever.recommend(history)")
            exclude = build_matrix(history, user_ids, self.item_index)
        candidate_indices = None
        if candidates is not None:
            candidate_indices = [self.item_index.get(str(i)) for i in candidates]
            missing = [c for c, i in zip(candidates, candidate_indices) if i is None]
            if missing:
                raise KeyError(f"EmbeddingRetriever.recommend: {len(missing)} candidate items are not in the catalog, e.g. {missing[:3]}")
        top = self.search(users, k, exclude=exclude, candidates=candidate_indices)
        found = top.indices >= 0
        rows = np.repeat(np.arange(len(user_ids)), found.sum(axis=1))
        return pd.DataFrame(
            {
                COL_USER: np.asarray(user_ids, dtype=object)[rows],
                COL_ITEM: np.asarray(self.item_ids, dtype=object)[top.indices[found]],
                COL_SCORE: top.scores[found].astype(np.float64),
                COL_RANK: (np.cumsum(found, axis=1))[found],
            }
        )


def popularity_counts(train: pd.DataFrame, item_ids: Sequence[str]) -> np.ndarray:
    """Return the number of distinct training users of each item, in ``item_ids`` order."""
    require_columns(train, [COL_USER, COL_ITEM], where="popularity_counts(train)")
    counts = train[[COL_USER, COL_ITEM]].astype(str).drop_duplicates()[COL_ITEM].value_counts()
    return counts.reindex([str(i) for i in item_ids]).fillna(0).to_numpy(dtype=np.float64)


def user_history_rows(history: pd.DataFrame, user_ids: Sequence[str], item_ids: Sequence[str] | Mapping[str, int]) -> sp.csr_matrix:
    """Return a binary (users x items) matrix of ``history`` for :func:`history_mean_vectors` or ``exclude``."""
    require_columns(history, [COL_USER, COL_ITEM], where="user_history_rows(history)")
    index = item_ids if isinstance(item_ids, Mapping) else {str(item): i for i, item in enumerate(item_ids)}
    return build_matrix(history, [str(u) for u in user_ids], index)
