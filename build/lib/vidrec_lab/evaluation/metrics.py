"""Ranking metrics at K and beyond-accuracy metrics of top-K recommendation lists.

Every function takes a recommendation table (``user_id``, ``item_id``,
``rank``) as :meth:`vidrec_lab.recommend.Recommender.recommend` returns it.
The ranking metrics also take a relevance table (``user_id``, ``item_id``)
of held-out items. Relevance is binary and the ranking is the full list a
model returned.

Conventions shared by the ranking metrics:

* Order comes from the ``rank`` column alone (1 is the top), never from
  ``score``. ``Recommender.recommend`` breaks score ties by catalog position
  (the lower index ranks first), so tied items still get distinct ranks.
  :func:`~vidrec_lab.recommend.topk_indices` notes the one exception, for
  catalogs above 50,000 items.
* Ranks must be integers >= 1 and unique per user. They need not be
  contiguous, because a missing rank is a position without a relevant item.
* A user is evaluated when they have at least one relevant item. Users with
  an empty or missing list score 0. Users who only appear in the
  recommendation table are ignored. ``per_user=False`` returns the mean over
  evaluated users and ``per_user=True`` returns a ``pandas.Series`` of their
  values indexed by user id.
* ``recall`` divides the hits in the top K by the number of relevant items
  (standard recall, so a user with more than K relevant items cannot reach 1).
  ``hit_rate`` is 1 when at least one relevant item is in the top K.
  ``precision`` divides by K even when the list is shorter than K.
* ``ndcg`` uses the ``1 / log2(rank + 1)`` discount and an ideal DCG of
  ``min(|relevant|, K)`` hits at the top. ``map`` normalises the sum of
  precision at each hit by ``min(|relevant|, K)``, so a perfect top-K list
  scores 1. ``mrr`` is the reciprocal rank of the first hit within K, else 0.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from vidrec_lab.constants import COL_ITEM, COL_USER
from vidrec_lab.recommend import COL_RANK
from vidrec_lab.tables import DataError, require_columns

logger = logging.getLogger(__name__)

RANKING_METRICS = ("precision", "recall", "f1", "hit_rate", "ndcg", "mrr", "map")
BEYOND_ACCURACY_METRICS = ("coverage", "gini", "novelty", "diversity", "popularity_bias")


def check_metric_names(names: Iterable[str], allowed: Sequence[str] = RANKING_METRICS) -> tuple[str, ...]:
    """Return ``names`` as a tuple after checking each one against ``allowed``.

    Raises:
        ValueError: naming the first unknown metric and the allowed names.
    """
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    for name in names:
        if name not in allowed:
            raise ValueError(f"metric must be one of {list(allowed)}; got {name!r}")
    if not names:
        raise ValueError(f"at least one metric is needed; choose from {list(allowed)}")
    return names


def _check_k(k, *, function: str) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{function}: k must be a positive integer; got {k!r}")
    return int(k)


def _check_table(df: pd.DataFrame, columns: Sequence[str], *, function: str, table: str) -> None:
    """Raise unless ``df`` has ``columns``; the message names the function, the table and the columns found."""
    require_columns(df, columns, where=f"{function}({table})")


def _checked_recs(recs: pd.DataFrame, *, function: str, col_user: str, col_item: str, col_rank: str, table: str = "recs") -> pd.DataFrame:
    """Return (user, item, rank) of ``recs`` with string ids and integer ranks, after checking them."""
    _check_table(recs, [col_user, col_item, col_rank], function=function, table=table)
    out = pd.DataFrame(
        {
            col_user: recs[col_user].astype(str).to_numpy(),
            col_item: recs[col_item].astype(str).to_numpy(),
        }
    )
    ranks = pd.to_numeric(recs[col_rank], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(ranks) | (ranks < 1) | (ranks != np.floor(ranks))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{function}({table}): column '{col_rank}' at row {row} is {recs[col_rank].iloc[row]!r}; "
            "expected an integer rank >= 1"
        )
    out[col_rank] = ranks.astype(np.int64)
    for columns, kind in (([col_user, col_rank], "rank"), ([col_user, col_item], "item")):
        duplicated = out.duplicated(subset=columns).to_numpy()
        if duplicated.any():
            row = int(np.flatnonzero(duplicated)[0])
            value = out[columns[1]].iloc[row]
            duplicate = int(value) if kind == "rank" else repr(value)
            raise DataError(
                f"{function}({table}): user {out[col_user].iloc[row]!r} has the same {kind} {duplicate} twice "
                f"(row {row}); each list needs unique items and ranks"
            )
    return out


def _cut(recs: pd.DataFrame, k: int | None, col_rank: str) -> pd.DataFrame:
    if k is None:
        return recs
    return recs.loc[recs[col_rank].to_numpy() <= k]


# --------------------------------------------------------------------------- ranking metrics


@dataclass
class _Hits:
    """Hit matrix of the evaluated users, where ``hits[u, r]`` is True when rank ``r + 1`` contains a relevant item."""

    users: pd.Index  # evaluated users (those with relevant items), sorted
    hits: np.ndarray  # (n_users, k) bool
    n_relevant: np.ndarray  # (n_users,) int


def _build_hits(
    recs: pd.DataFrame,
    relevant: pd.DataFrame,
    k: int,
    *,
    function: str,
    col_user: str,
    col_item: str,
    col_rank: str,
) -> _Hits:
    recs = _checked_recs(recs, function=function, col_user=col_user, col_item=col_item, col_rank=col_rank)
    _check_table(relevant, [col_user, col_item], function=function, table="relevant")
    pairs = pd.DataFrame(
        {col_user: relevant[col_user].astype(str).to_numpy(), col_item: relevant[col_item].astype(str).to_numpy()}
    ).drop_duplicates()
    if pairs.empty:
        raise DataError(f"{function}(relevant): the relevance table has no rows, so no user can be evaluated")
    n_relevant = pairs.groupby(col_user).size()  # sorted by user id
    users = n_relevant.index

    top = recs.loc[(recs[col_rank].to_numpy() <= k) & recs[col_user].isin(users).to_numpy()]
    is_hit = pd.MultiIndex.from_frame(top[[col_user, col_item]]).isin(pd.MultiIndex.from_frame(pairs))
    hits = np.zeros((len(users), k), dtype=bool)
    rows = users.get_indexer(top[col_user].to_numpy()[is_hit])
    hits[rows, top[col_rank].to_numpy()[is_hit] - 1] = True
    return _Hits(users=users, hits=hits, n_relevant=n_relevant.to_numpy())


def _metric_values(state: _Hits, metric: str, k: int) -> np.ndarray:
    """Return the per-user value of ``metric`` at ``k`` (k <= the hit matrix width)."""
    hits = state.hits[:, :k]
    n_hits = hits.sum(axis=1)
    if metric == "precision":
        return n_hits / k
    if metric == "recall":
        return n_hits / state.n_relevant
    if metric == "f1":
        precision = n_hits / k
        recall = n_hits / state.n_relevant
        total = precision + recall
        return np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    if metric == "hit_rate":
        return (n_hits > 0).astype(np.float64)
    if metric == "mrr":
        first = hits.argmax(axis=1)
        return np.where(n_hits > 0, 1.0 / (first + 1), 0.0)

    ideal = np.minimum(state.n_relevant, k)  # the best list puts min(|relevant|, K) hits on top
    if metric == "ndcg":
        discounts = 1.0 / np.log2(np.arange(2, k + 2))
        dcg = hits @ discounts
        idcg = np.cumsum(discounts)[ideal - 1]
        return dcg / idcg
    if metric == "map":
        positions = np.arange(1, k + 1)
        precision_at_hits = np.cumsum(hits, axis=1) / positions * hits
        return precision_at_hits.sum(axis=1) / ideal
    raise ValueError(f"metric must be one of {list(RANKING_METRICS)}; got {metric!r}")


def ranking_metrics(
    recs: pd.DataFrame,
    relevant: pd.DataFrame,
    *,
    ks: Sequence[int] = (10,),
    metrics: Sequence[str] = RANKING_METRICS,
    per_user: bool = False,
    col_user: str = COL_USER,
    col_item: str = COL_ITEM,
    col_rank: str = COL_RANK,
) -> pd.DataFrame:
    """Compute several ranking metrics at several cut-offs from one pass over the tables.

    Args:
        recs (pandas.DataFrame): Recommendations (user, item, rank).
        relevant (pandas.DataFrame): Relevant (held-out) pairs (user, item).
        ks (sequence of int): Cut-offs K.
        metrics (sequence of str): Names from :data:`RANKING_METRICS`.
        per_user (bool): Return one row per evaluated user instead of means.
        col_user, col_item, col_rank (str): Column names.

    Returns:
        pandas.DataFrame: Columns ``metric, k, value`` (means over evaluated
        users), or with ``per_user`` the columns ``user_id, metric, k, value``.
    """
    function = "ranking_metrics"
    metrics = check_metric_names(metrics)
    ks = [_check_k(k, function=function) for k in ks]
    if not ks:
        raise ValueError(f"{function}: ks must name at least one cut-off K")
    state = _build_hits(recs, relevant, max(ks), function=function, col_user=col_user, col_item=col_item, col_rank=col_rank)
    frames = []
    for metric in metrics:
        for k in ks:
            values = _metric_values(state, metric, k)
            if per_user:
                frames.append(pd.DataFrame({col_user: state.users.to_numpy(), "metric": metric, "k": k, "value": values}))
            else:
                frames.append(pd.DataFrame({"metric": [metric], "k": [k], "value": [float(values.mean())]}))
    return pd.concat(frames, ignore_index=True)


def _single_metric(metric, recs, relevant, k, per_user, col_user, col_item, col_rank):
    function = f"{metric}_at_k"
    k = _check_k(k, function=function)
    state = _build_hits(recs, relevant, k, function=function, col_user=col_user, col_item=col_item, col_rank=col_rank)
    values = _metric_values(state, metric, k)
    if per_user:
        return pd.Series(values, index=state.users.rename(col_user), name=f"{metric}@{k}")
    return float(values.mean())


def precision_at_k(recs, relevant, k=10, *, per_user=False, col_user=COL_USER, col_item=COL_ITEM, col_rank=COL_RANK):
    """Compute precision@K: relevant items in the top K divided by K.

    Args:
        recs (pandas.DataFrame): Recommendations (user, item, rank).
        relevant (pandas.DataFrame): Relevant pairs (user, item).
        k (int): Cut-off.
        per_user (bool): Return a Series of per-user values instead of the mean.
        col_user, col_item, col_rank (str): Column names.

    Returns:
        float or pandas.Series: Mean over users with relevant items, or the
        per-user values indexed by user id.
    """
    return _single_metric("precision", recs, relevant, k, per_user, col_user, col_item, col_rank)


def recall_at_k(recs, relevant, k=10, *, per_user=False, col_user=COL_USER, col_item=COL_ITEM, col_rank=COL_RANK):
    """Compute recall@K: relevant items in the top K divided by the user's number of relevant items.

    The denominator is ``|relevant|``, not ``min(|relevant|, K)``, so a user
    with more than K relevant items scores below 1 even with a perfect list.
    Arguments and return value are those of :func:`precision_at_k`.
    """
    return _single_metric("recall", recs, relevant, k, per_user, col_user, col_item, col_rank)


def f1_at_k(recs, relevant, k=10, *, per_user=False, col_user=COL_USER, col_item=COL_ITEM, col_rank=COL_RANK):
    """Compute the per-user harmonic mean of precision@K and recall@K (0 when both are 0).

    The mean is taken over users' F1 values, not computed from mean precision
    and mean recall. Arguments and return value are those of :func:`precision_at_k`.
    """
    return _single_metric("f1", recs, relevant, k, per_user, col_user, col_item, col_rank)


def hit_rate_at_k(recs, relevant, k=10, *, per_user=False, col_user=COL_USER, col_item=COL_ITEM, col_rank=COL_RANK):
    """Compute HitRate@K: 1 when at least one relevant item is in the top K, else 0.

    Arguments and return value are those of :func:`precision_at_k`.
    """
    return _single_metric("hit_rate", recs, relevant, k, per_user, col_user, col_item, col_rank)


def ndcg_at_k(recs, relevant, k=10, *, per_user=False, col_user=COL_USER, col_item=COL_ITEM, col_rank=COL_RANK):
    """Compute NDCG@K with binary gains and the ``1 / log2(rank + 1)`` discount.

    The ideal DCG places ``min(|relevant|, K)`` hits at ranks 1, 2, ...
    Without score ties this equals ``sklearn.metrics.ndcg_score(y_true,
    y_score, k=K)`` on binary ``y_true`` over the full candidate set. With
    ties, scikit-learn averages the gain over every order of the tied items,
    while this function follows the ``rank`` column.
    Arguments and return value are those of :func:`precision_at_k`.
    """
    return _single_metric("ndcg", recs, relevant, k, per_user, col_user, col_item, col_rank)


def mrr_at_k(recs, relevant, k=10, *, per_user=False, col_user=COL_USER, col_item=COL_ITEM, col_rank=COL_RANK):
    """Compute MRR@K: the reciprocal rank of the first relevant item within the top K, else 0.

    Arguments and return value are those of :func:`precision_at_k`.
    """
    return _single_metric("mrr", recs, relevant, k, per_user, col_user, col_item, col_rank)


def map_at_k(recs, relevant, k=10, *, per_user=False, col_user=COL_USER, col_item=COL_ITEM, col_rank=COL_RANK):
    """Compute MAP@K: the sum of precision@r at each hit r <= K, divided by ``min(|relevant|, K)``.

    Normalising by ``min(|relevant|, K)`` instead of ``|relevant|`` lets a
    perfect top-K list score 1 for users with more than K relevant items.
    Arguments and return value are those of :func:`precision_at_k`.
    """
    return _single_metric("map", recs, relevant, k, per_user, col_user, col_item, col_rank)


# --------------------------------------------------------------------------- beyond accuracy


def catalog_coverage(recs: pd.DataFrame, catalog_size: int, *, k: int | None = None, col_item: str = COL_ITEM, col_rank: str = COL_RANK) -> float:
    """Compute the share of the catalog that appears in at least one top-K list.

    Args:
        recs (pandas.DataFrame): Recommendations (user, item, rank).
        catalog_size (int): Number of items that could have been recommended.
        k (int, optional): Count only ranks <= k (default: every row).
        col_item, col_rank (str): Column names.

    Returns:
        float: Distinct recommended items divided by ``catalog_size``.
    """
    function = "catalog_coverage"
    columns = [col_item] if k is None else [col_item, col_rank]
    _check_table(recs, columns, function=function, table="recs")
    if isinstance(catalog_size, bool) or not isinstance(catalog_size, (int, np.integer)) or catalog_size < 1:
        raise ValueError(f"{function}: catalog_size must be a positive integer; got {catalog_size!r}")
    if k is not None:
        recs = recs.loc[pd.to_numeric(recs[col_rank]).to_numpy() <= _check_k(k, function=function)]
    n_items = int(recs[col_item].astype(str).nunique())
    if n_items > catalog_size:
        raise DataError(
            f"{function}: the lists contain {n_items} distinct items but catalog_size is {catalog_size}; "
            "pass the size of the catalog the lists were drawn from"
        )
    return n_items / catalog_size


def gini_exposure(recs: pd.DataFrame, item_ids: Sequence[str], *, k: int | None = None, col_item: str = COL_ITEM, col_rank: str = COL_RANK) -> float:
    """Compute the Gini coefficient of how often each catalog item is recommended.

    Items of ``item_ids`` that are never recommended count as 0. The value is
    0 when every item is recommended equally often and ``(n - 1) / n`` when
    one of ``n`` items receives every slot.

    Args:
        recs (pandas.DataFrame): Recommendations (user, item, rank).
        item_ids (sequence of str): The catalog the lists were drawn from.
        k (int, optional): Count only ranks <= k (default: every row).
        col_item, col_rank (str): Column names.

    Returns:
        float: The Gini coefficient, or NaN when ``recs`` is empty.
    """
    function = "gini_exposure"
    columns = [col_item] if k is None else [col_item, col_rank]
    _check_table(recs, columns, function=function, table="recs")
    catalog = pd.Index([str(i) for i in item_ids]).unique()
    if len(catalog) == 0:
        raise ValueError(f"{function}: item_ids is empty; pass the catalog the lists were drawn from")
    if k is not None:
        recs = recs.loc[pd.to_numeric(recs[col_rank]).to_numpy() <= _check_k(k, function=function)]
    positions = catalog.get_indexer(recs[col_item].astype(str).to_numpy())
    if (positions < 0).any():
        unknown = recs[col_item].astype(str).to_numpy()[positions < 0]
        raise DataError(
            f"{function}(recs): {len(np.unique(unknown))} recommended items are not in item_ids, "
            f"e.g. {list(np.unique(unknown)[:3])}"
        )
    if len(positions) == 0:
        return float("nan")
    counts = np.sort(np.bincount(positions, minlength=len(catalog)).astype(np.float64))
    n = len(counts)
    ranks = np.arange(1, n + 1)
    return float(((2 * ranks - n - 1) * counts).sum() / (n * counts.sum()))


def item_probability(train: pd.DataFrame, item_ids: Sequence[str] | None = None, *, col_user: str = COL_USER, col_item: str = COL_ITEM) -> pd.Series:
    """Estimate p(item), the probability that a user has interacted with the item, with smoothing.

    ``p(i) = (u_i + 1) / (U + 2)``, where ``u_i`` is the number of distinct
    users with ``i`` in ``train`` and ``U`` the number of distinct users
    (Laplace's rule of succession). Items without interactions therefore get
    ``1 / (U + 2)`` instead of 0, which keeps their self-information finite.

    Args:
        train (pandas.DataFrame): Training interactions (user, item).
        item_ids (sequence of str, optional): Items to return (default: items in ``train``).
        col_user, col_item (str): Column names.

    Returns:
        pandas.Series: p(item) indexed by item id.
    """
    _check_table(train, [col_user, col_item], function="item_probability", table="train")
    users = train[col_user].astype(str)
    items = train[col_item].astype(str)
    counts = pd.DataFrame({col_user: users, col_item: items}).drop_duplicates().groupby(col_item).size()
    if item_ids is not None:
        counts = counts.reindex(pd.Index([str(i) for i in item_ids], name=col_item), fill_value=0)
    n_users = users.nunique()
    return ((counts + 1) / (n_users + 2)).astype(np.float64).rename("p")


def novelty(
    recs: pd.DataFrame,
    item_popularity: pd.DataFrame | pd.Series,
    *,
    k: int | None = None,
    per_user: bool = False,
    col_user: str = COL_USER,
    col_item: str = COL_ITEM,
    col_rank: str = COL_RANK,
):
    """Compute the mean self-information ``-log2 p(item)`` of recommended items, in bits.

    Each user's list is averaged first, then the users, so long lists do not
    weigh more.

    Args:
        recs (pandas.DataFrame): Recommendations (user, item, rank).
        item_popularity (pandas.DataFrame or pandas.Series): Training
            interactions, turned into smoothed probabilities by
            :func:`item_probability` (an item without interactions gets
            ``1 / (U + 2)``), or a Series of probabilities in (0, 1] indexed
            by item id that covers every recommended item.
        k (int, optional): Use only ranks <= k (default: every row).
        per_user (bool): Return a Series of per-user values instead of the mean.
        col_user, col_item, col_rank (str): Column names.

    Returns:
        float or pandas.Series: Mean over users with a non-empty list (NaN
        when there is none), or the per-user values.
    """
    function = "novelty"
    recs = _checked_recs(recs, function=function, col_user=col_user, col_item=col_item, col_rank=col_rank)
    recs = _cut(recs, None if k is None else _check_k(k, function=function), col_rank)
    items = recs[col_item].astype(str)
    if isinstance(item_popularity, pd.DataFrame):
        p = item_probability(item_popularity, items.unique(), col_user=col_user, col_item=col_item)
    elif isinstance(item_popularity, pd.Series):
        p = item_popularity.copy()
        p.index = p.index.astype(str)
        values = p.to_numpy(dtype=np.float64)
        bad = ~((values > 0) & (values <= 1))
        if bad.any():
            raise DataError(f"{function}(item_popularity): p({p.index[bad][0]!r}) = {values[bad][0]!r}; probabilities must be in (0, 1]")
    else:
        raise DataError(f"{function}: item_popularity must be a DataFrame of interactions or a Series of probabilities; got {type(item_popularity).__name__}")
    probability = items.map(p)
    if probability.isna().any():
        missing = items[probability.isna()].unique()
        raise DataError(f"{function}(item_popularity): {len(missing)} recommended items have no probability, e.g. {list(missing[:3])}")
    information = pd.Series(-np.log2(probability.to_numpy(dtype=np.float64)), index=recs.index)
    values = information.groupby(recs[col_user].to_numpy()).mean().rename_axis(col_user).rename("novelty")
    return values if per_user else float(values.mean())


def _vector_table(item_vectors, *, function: str) -> tuple[pd.Index, np.ndarray]:
    """Return (item ids, row-normalised float matrix) from a dict or an (ids, matrix) pair."""
    if isinstance(item_vectors, Mapping):
        ids = [str(i) for i in item_vectors]
        matrix = np.vstack([np.asarray(v, dtype=np.float64).ravel() for v in item_vectors.values()]) if ids else np.zeros((0, 0))
    elif isinstance(item_vectors, tuple) and len(item_vectors) == 2:
        ids = [str(i) for i in item_vectors[0]]
        matrix = np.asarray(item_vectors[1], dtype=np.float64)
    else:
        raise DataError(f"{function}: item_vectors must be a dict {{item_id: vector}} or a pair (item_ids, matrix); got {type(item_vectors).__name__}")
    if matrix.ndim != 2 or matrix.shape[0] != len(ids):
        raise DataError(f"{function}: item_vectors has {len(ids)} ids but a matrix of shape {matrix.shape}; expected ({len(ids)}, dim)")
    index = pd.Index(ids)
    if index.has_duplicates:
        raise DataError(f"{function}: item id {index[index.duplicated()][0]!r} appears more than once in item_vectors")
    return index, matrix


def intra_list_diversity(
    recs: pd.DataFrame,
    item_vectors,
    *,
    k: int | None = None,
    per_user: bool = False,
    col_user: str = COL_USER,
    col_item: str = COL_ITEM,
    col_rank: str = COL_RANK,
):
    """Compute the mean pairwise cosine distance ``1 - cos(a, b)`` within each list.

    Lists with fewer than two items have no pairs and are left out of the mean.

    Args:
        recs (pandas.DataFrame): Recommendations (user, item, rank).
        item_vectors (dict or tuple): ``{item_id: vector}`` or ``(item_ids, matrix)``;
            every recommended item needs a non-zero vector.
        k (int, optional): Use only ranks <= k (default: every row).
        per_user (bool): Return a Series of per-user values instead of the mean.
        col_user, col_item, col_rank (str): Column names.

    Returns:
        float or pandas.Series: Mean over lists with at least two items (NaN
        when there is none), or per-user values (NaN for shorter lists).
    """
    function = "intra_list_diversity"
    recs = _checked_recs(recs, function=function, col_user=col_user, col_item=col_item, col_rank=col_rank)
    recs = _cut(recs, None if k is None else _check_k(k, function=function), col_rank)
    ids, matrix = _vector_table(item_vectors, function=function)
    positions = ids.get_indexer(recs[col_item].to_numpy())
    if (positions < 0).any():
        missing = recs[col_item].to_numpy()[positions < 0]
        raise DataError(f"{function}(item_vectors): {len(np.unique(missing))} recommended items have no vector, e.g. {list(np.unique(missing)[:3])}")
    norms = np.linalg.norm(matrix, axis=1)
    used_zero = norms[positions] == 0
    if used_zero.any():
        raise DataError(f"{function}(item_vectors): item {recs[col_item].to_numpy()[used_zero][0]!r} has a zero vector, so its cosine distance is undefined")
    unit = matrix / np.where(norms > 0, norms, 1.0)[:, None]

    # Sum of pairwise cosines within a list = (|sum of unit vectors|^2 - n) / 2, one sparse product for all users.
    users, user_rows = np.unique(recs[col_user].to_numpy(), return_inverse=True)
    membership = sp.csr_matrix((np.ones(len(positions)), (user_rows, positions)), shape=(len(users), len(ids)))
    summed = membership @ unit  # (n_users, dim)
    n = np.bincount(user_rows, minlength=len(users)).astype(np.float64)
    pair_count = n * (n - 1)
    mean_cosine = np.divide((summed**2).sum(axis=1) - n, pair_count, out=np.full(len(users), np.nan), where=pair_count > 0)
    values = pd.Series(1.0 - mean_cosine, index=pd.Index(users, name=col_user), name="diversity")
    if per_user:
        return values
    return float(values.mean()) if values.notna().any() else float("nan")


def popularity_bias(
    recs: pd.DataFrame,
    train: pd.DataFrame,
    *,
    history: pd.DataFrame | None = None,
    k: int | None = None,
    per_user: bool = False,
    col_user: str = COL_USER,
    col_item: str = COL_ITEM,
    col_rank: str = COL_RANK,
):
    """Compare the popularity of recommended items with the popularity of what users already watched.

    An item's popularity is the share of training users who interacted with
    it. For each user, the mean popularity of their list is compared with
    the mean popularity of the distinct items in their history. A ratio above
    1 means the model recommends more popular items than the users chose.

    Args:
        recs (pandas.DataFrame): Recommendations (user, item, rank).
        train (pandas.DataFrame): Interactions that define popularity.
        history (pandas.DataFrame, optional): The users' histories (default ``train``).
        k (int, optional): Use only ranks <= k (default: every row).
        per_user (bool): Return per-user values instead of the means.
        col_user, col_item, col_rank (str): Column names.

    Returns:
        dict or pandas.DataFrame: ``{"recommended": ..., "history": ..., "ratio": ...}``
        over users with both a list and a history (the ratio is between the
        two means), or with ``per_user`` a DataFrame indexed by user with
        columns ``recommended`` and ``history``.
    """
    function = "popularity_bias"
    recs = _checked_recs(recs, function=function, col_user=col_user, col_item=col_item, col_rank=col_rank)
    _check_table(train, [col_user, col_item], function=function, table="train")
    history = train if history is None else history
    _check_table(history, [col_user, col_item], function=function, table="history")
    recs = _cut(recs, None if k is None else _check_k(k, function=function), col_rank)

    pairs = pd.DataFrame({col_user: train[col_user].astype(str), col_item: train[col_item].astype(str)}).drop_duplicates()
    n_train_users = pairs[col_user].nunique()
    if n_train_users == 0:
        raise DataError(f"{function}(train): the training table is empty, so popularity is undefined")
    popularity = pairs.groupby(col_item).size() / n_train_users

    def mean_popularity(table: pd.DataFrame) -> pd.Series:
        table = pd.DataFrame({col_user: table[col_user].astype(str), col_item: table[col_item].astype(str)}).drop_duplicates()
        values = table[col_item].map(popularity).fillna(0.0)
        return values.groupby(table[col_user].to_numpy()).mean()

    both = pd.concat(
        [mean_popularity(recs).rename("recommended"), mean_popularity(history).rename("history")], axis=1, join="inner"
    ).rename_axis(col_user)
    if per_user:
        return both
    recommended = float(both["recommended"].mean()) if len(both) else float("nan")
    watched = float(both["history"].mean()) if len(both) else float("nan")
    ratio = recommended / watched if watched > 0 else float("nan")
    return {"recommended": recommended, "history": watched, "ratio": ratio}
