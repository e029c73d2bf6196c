"""Behaviour features: weighted user-item matrices, time-ordered sequences, user profiles.

Every function here works on the interaction table (``user_id``, ``item_id``,
``timestamp``, ``event``, ``value``) with NumPy, pandas and SciPy operations;
none loops over interactions in Python.
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from vidrec_lab.constants import (
    COL_EVENT,
    COL_ITEM,
    COL_TIMESTAMP,
    COL_USER,
    COL_VALUE,
    DEFAULT_SEED,
    EVENT_FAVORITE,
    EVENT_LIKE,
    EVENT_RATING,
    EVENT_VIEW,
)
from vidrec_lab.tables import DataError, id_sort_key, require_columns

logger = logging.getLogger(__name__)

# A like signals more interest than a view, and a favourite more than a like. A rating counts by its value.
DEFAULT_EVENT_WEIGHTS = {EVENT_VIEW: 1.0, EVENT_LIKE: 2.0, EVENT_FAVORITE: 3.0, EVENT_RATING: 1.0}
# Events whose weight is multiplied by ``value``: a view by its watch ratio, a rating by its score.
DEFAULT_USE_VALUE = (EVENT_VIEW, EVENT_RATING)
SECONDS_PER_DAY = 86_400


def interaction_matrix(
    interactions: pd.DataFrame,
    *,
    users: Sequence[str] | pd.DataFrame | None = None,
    items: Sequence[str] | pd.DataFrame | None = None,
    weights: Mapping[str, float] | None = None,
    use_value: Sequence[str] = DEFAULT_USE_VALUE,
    rating_threshold: float | None = None,
    time_decay_half_life: float | None = None,
    now: int | None = None,
) -> tuple[sp.csr_matrix, pd.Index, pd.Index]:
    """Build a weighted user-by-item matrix from an interaction table.

    Each row contributes ``weights[event]``, times ``value`` when its event is
    in ``use_value``, times the time-decay factor. Contributions to the same
    (user, item) cell are summed, so a view plus a like counts both.

    * Views: with ``"view"`` in ``use_value`` (default) a view counts by its
      watch ratio (``value`` = fraction watched, 1.0 when unknown).
    * Ratings: with ``"rating"`` in ``use_value`` (default) a rating counts by
      its score. With ``rating_threshold`` set, a rating counts as 1 when
      ``value >= rating_threshold`` and 0 otherwise (binarised), times its weight.
    * Time decay: with ``time_decay_half_life`` (days), a row of age ``a``
      days before ``now`` is multiplied by ``0.5 ** (a / half_life)``. Rows
      after ``now`` count with factor 1.

    Args:
        interactions (pandas.DataFrame): Interaction table.
        users (sequence of str or DataFrame, optional): Row order; a
            DataFrame gives its ``user_id`` column. Default: the distinct
            users in ``interactions`` in :func:`vidrec_lab.tables.id_sort_key`
            order (numeric when every id is an integer).
        items (sequence of str or DataFrame, optional): Column order, like
            ``users``. Pass the full catalogue so items without interactions
            get an empty column.
        weights (Mapping, optional): Weight per event kind, finite and
            non-negative; default :data:`DEFAULT_EVENT_WEIGHTS`. Give an
            event weight 0 to ignore it.
        use_value (sequence of str): Events whose weight is multiplied by
            ``value``.
        rating_threshold (float, optional): Binarise ratings at this score.
        time_decay_half_life (float, optional): Half-life in days; None
            (default) turns time decay off.
        now (int, optional): Reference time in seconds; default the latest
            timestamp in ``interactions``.

    Returns:
        tuple: ``(matrix, user_index, item_index)``: a float64
        :class:`scipy.sparse.csr_matrix` of shape (users, items) and the
        :class:`pandas.Index` of user and item ids for its rows and columns.

    Raises:
        DataError: On a missing column, an event without a weight, a value or
            timestamp that is not a finite number where it is used, or a user
            or item not in ``users`` / ``items``.
        ValueError: On a negative or non-finite weight, or a half-life <= 0.
    """
    where = "interaction_matrix(interactions)"
    table = _prepare(interactions, where)
    data = _row_weights(
        table,
        weights=weights,
        use_value=use_value,
        rating_threshold=rating_threshold,
        time_decay_half_life=time_decay_half_life,
        now=now,
        where=where,
    )
    user_index = _id_index(users, COL_USER, table[COL_USER])
    item_index = _id_index(items, COL_ITEM, table[COL_ITEM])
    rows = _positions(user_index, table[COL_USER], COL_USER, where)
    cols = _positions(item_index, table[COL_ITEM], COL_ITEM, where)

    matrix = sp.coo_matrix((data, (rows, cols)), shape=(len(user_index), len(item_index))).tocsr()
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    return matrix, user_index, item_index


def user_sequences(
    interactions: pd.DataFrame,
    max_len: int | None = None,
    *,
    events: Sequence[str] | None = None,
) -> dict[str, list[str]]:
    """Return each user's items in time order.

    Ties in time are broken by item id, in :func:`vidrec_lab.tables.id_sort_key`
    order (numeric when every id is an integer, so "9" before "10"), as the
    splits do. An item a user met several times appears each time.

    Args:
        interactions (pandas.DataFrame): Interaction table.
        max_len (int, optional): Keep only each user's latest ``max_len`` items.
        events (sequence of str, optional): Keep only these event kinds.

    Returns:
        dict: ``user_id`` to the list of ``item_id`` values, oldest first;
        users in ``id_sort_key`` order.

    Raises:
        DataError: On a missing column or a timestamp that is not a number.
        ValueError: If ``max_len`` is not a positive integer.
    """
    where = "user_sequences(interactions)"
    if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 1):
        raise ValueError(f"max_len must be a positive integer or None; got {max_len!r}")
    table = _prepare(interactions, where)
    if events is not None:
        table = table[table[COL_EVENT].isin(list(events))]
    timestamps = _numeric(table[COL_TIMESTAMP], COL_TIMESTAMP, where)

    user_ids = table[COL_USER].to_numpy(dtype=str)
    item_ids = table[COL_ITEM].to_numpy(dtype=str)
    user_keys = id_sort_key(table[COL_USER]).to_numpy()
    item_keys = id_sort_key(table[COL_ITEM]).to_numpy()
    order = np.lexsort((item_keys, timestamps, user_keys))  # the last key sorts first
    user_ids, item_ids = user_ids[order], item_ids[order]

    starts = np.flatnonzero(np.r_[True, user_ids[1:] != user_ids[:-1]]) if len(user_ids) else np.array([], int)
    ends = np.r_[starts[1:], len(user_ids)]
    if max_len is not None:
        starts = np.maximum(starts, ends - max_len)
    return {str(user_ids[start]): item_ids[start:end].tolist() for start, end in zip(starts, ends)}


def user_profiles(
    interactions: pd.DataFrame,
    item_ids: Sequence[str],
    item_vectors: np.ndarray,
    *,
    users: Sequence[str] | pd.DataFrame | None = None,
    weights: Mapping[str, float] | None = None,
    use_value: Sequence[str] = DEFAULT_USE_VALUE,
    rating_threshold: float | None = None,
    time_decay_half_life: float | None = None,
    now: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Build one vector per user: the weighted mean of the vectors of items in their history.

    Weights are the cells of :func:`interaction_matrix` with the same
    settings, so the same events, values and time decay count. Each profile
    is then L2-normalised. A user whose weights sum to 0 gets a zero vector.

    Args:
        interactions (pandas.DataFrame): Interaction table.
        item_ids (sequence of str): Ids of the rows of ``item_vectors``.
        item_vectors (numpy.ndarray): Shape (items, dim).
        users (sequence of str or DataFrame, optional): Users to return, in
            this order; default the users in ``interactions`` in
            ``id_sort_key`` order.
        weights, use_value, rating_threshold, time_decay_half_life, now: As
            in :func:`interaction_matrix`.

    Returns:
        tuple: ``(user_ids, matrix)``: user ids as a numpy array of str and a
        float32 matrix of shape (users, dim).

    Raises:
        DataError: If an interaction names an item not in ``item_ids``, and
            as in :func:`interaction_matrix`.
        ValueError: If ``item_vectors`` is not 2-D with one row per item id.
    """
    vectors = np.asarray(item_vectors)
    ids = [str(item) for item in item_ids]
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise ValueError(
            f"item_vectors must have shape (len(item_ids), dim) = ({len(ids)}, dim); got {vectors.shape}"
        )
    matrix, user_index, _ = interaction_matrix(
        interactions,
        users=users,
        items=ids,
        weights=weights,
        use_value=use_value,
        rating_threshold=rating_threshold,
        time_decay_half_life=time_decay_half_life,
        now=now,
    )
    totals = np.asarray(matrix.sum(axis=1)).ravel()  # (users,)
    profiles = np.asarray(matrix @ vectors.astype(np.float64))  # (users, dim)
    has_weight = totals > 0
    profiles[has_weight] /= totals[has_weight, None]
    norms = np.linalg.norm(profiles, axis=1)
    nonzero = norms > 0
    profiles[nonzero] /= norms[nonzero, None]
    profiles[~nonzero] = 0.0
    return user_index.to_numpy(dtype=str), profiles.astype(np.float32)


def item_vectors_from_interactions(
    matrix: sp.spmatrix | np.ndarray,
    dim: int = 64,
    seed: int = DEFAULT_SEED,
    *,
    normalize: bool = True,
) -> np.ndarray:
    """Embed items by a truncated SVD of the user-by-item matrix.

    With ``matrix ≈ U S Vᵀ`` (``dim`` singular values), item ``j`` gets
    ``V[j] * sqrt(S)``: items liked by the same users point the same way.
    Randomised SVD with a fixed sign convention makes the result a function
    of ``matrix``, ``dim`` and ``seed``.

    Args:
        matrix (scipy.sparse matrix or numpy.ndarray): Shape (users, items),
            e.g. from :func:`interaction_matrix`.
        dim (int): Number of components, at most ``min(users, items)``.
        seed (int): Seed of the randomised SVD.
        normalize (bool): L2-normalise each item vector (items without
            interactions stay all zeros).

    Returns:
        numpy.ndarray: float32, shape (items, dim).

    Raises:
        ValueError: If ``dim`` is not between 1 and ``min(matrix.shape)``.
    """
    from sklearn.utils.extmath import randomized_svd

    shape = matrix.shape
    if len(shape) != 2:
        raise ValueError(f"matrix must be 2-D (users, items); got shape {shape}")
    limit = min(shape)
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 1 <= dim <= limit:
        raise ValueError(f"dim must be an integer from 1 to min(users, items) = {limit}; got {dim!r}")
    values = sp.csr_matrix(matrix, dtype=np.float64)
    _, singular, components = randomized_svd(values, n_components=int(dim), n_iter=7, random_state=seed)
    vectors = components.T * np.sqrt(singular)  # (items, dim)
    if normalize:
        norms = np.linalg.norm(vectors, axis=1)
        # Items without interactions come out as rounding noise, not exact zeros.
        empty = np.asarray(values.getnnz(axis=0)).ravel() == 0
        vectors[empty] = 0.0
        nonzero = (norms > 0) & ~empty
        vectors[nonzero] /= norms[nonzero, None]
    return vectors.astype(np.float32)


# ---------------------------------------------------------------------------- helpers


def _prepare(interactions: pd.DataFrame, where: str) -> pd.DataFrame:
    require_columns(interactions, [COL_USER, COL_ITEM, COL_TIMESTAMP, COL_EVENT, COL_VALUE], where=where)
    table = interactions[[COL_USER, COL_ITEM, COL_TIMESTAMP, COL_EVENT, COL_VALUE]]
    for column in (COL_USER, COL_ITEM):
        missing = table[column].isna().to_numpy()
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise DataError(f"{where}: column '{column}' is empty at row {row}; every row needs an id")
    return table.assign(
        **{
            COL_USER: table[COL_USER].astype(str),
            COL_ITEM: table[COL_ITEM].astype(str),
            COL_EVENT: table[COL_EVENT].fillna("").astype(str),
        }
    )


def _numeric(values: pd.Series, column: str, where: str, rows: np.ndarray | None = None) -> np.ndarray:
    """Return ``values`` as float64, raising on the first non-finite value among ``rows`` (default all)."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers)
    if rows is not None:
        bad &= rows
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = values.iloc[row]
        value = value.item() if isinstance(value, np.generic) else value  # "nan", not "np.float64(nan)"
        raise DataError(f"{where}: column '{column}' at row {row} is {value!r}; expected a finite number")
    return numbers


def _row_weights(
    table: pd.DataFrame,
    *,
    weights: Mapping[str, float] | None,
    use_value: Sequence[str],
    rating_threshold: float | None,
    time_decay_half_life: float | None,
    now: int | None,
    where: str,
) -> np.ndarray:
    """Return each row's contribution to the matrix."""
    if time_decay_half_life is not None and not (
        isinstance(time_decay_half_life, (int, float, np.number)) and 0 < time_decay_half_life < np.inf
    ):
        raise ValueError(f"time_decay_half_life must be a positive number of days; got {time_decay_half_life!r}")
    weights = dict(DEFAULT_EVENT_WEIGHTS if weights is None else weights)
    for event, weight in weights.items():
        if not isinstance(weight, (int, float, np.number)) or not np.isfinite(weight) or weight < 0:
            raise ValueError(f"weights[{event!r}] must be a finite number >= 0; got {weight!r}")
    events = table[COL_EVENT]
    unknown = ~events.isin(list(weights)).to_numpy()
    if unknown.any():
        counts = events[unknown].value_counts()
        raise DataError(
            f"{where}: event(s) {counts.to_dict()} (kind: rows) have no weight; weights has {sorted(weights)}. "
            "Add a weight for each event kind, 0 to ignore it."
        )
    data = events.map(weights).to_numpy(dtype=np.float64, copy=True)

    factors = np.ones(len(table))
    value_rows = events.isin(list(use_value)).to_numpy()
    if value_rows.any():
        factors[value_rows] = _numeric(table[COL_VALUE], COL_VALUE, where, rows=value_rows)[value_rows]
    if rating_threshold is not None:
        ratings = (events == EVENT_RATING).to_numpy()
        scores = _numeric(table[COL_VALUE], COL_VALUE, where, rows=ratings)[ratings]
        factors[ratings] = (scores >= rating_threshold).astype(np.float64)
    data *= factors

    if time_decay_half_life is not None:
        timestamps = _numeric(table[COL_TIMESTAMP], COL_TIMESTAMP, where)
        reference = float(timestamps.max()) if now is None else float(now)
        age_days = np.clip(reference - timestamps, 0.0, None) / SECONDS_PER_DAY
        data *= 0.5 ** (age_days / time_decay_half_life)
    return data


def _id_index(requested: Sequence[str] | pd.DataFrame | None, column: str, observed: pd.Series) -> pd.Index:
    if requested is None:
        distinct = pd.Series(observed.unique(), dtype=str)
        order = np.argsort(id_sort_key(distinct).to_numpy(), kind="stable")
        return pd.Index(distinct.to_numpy()[order], name=column)
    if isinstance(requested, pd.DataFrame):
        require_columns(requested, [column], where=f"interaction_matrix({column}s table)")
        requested = requested[column]
    index = pd.Index([str(value) for value in requested], name=column)
    if index.has_duplicates:
        duplicate = index[index.duplicated()][0]
        raise DataError(f"interaction_matrix: {column} {duplicate!r} is listed more than once in the given ids")
    return index


def _positions(index: pd.Index, ids: pd.Series, column: str, where: str) -> np.ndarray:
    positions = index.get_indexer(ids)
    unknown = positions < 0
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise DataError(
            f"{where}: {column} {ids.iloc[row]!r} at row {row} is not in the given {column} list "
            f"({int(unknown.sum())} rows with unknown ids in all)"
        )
    return positions
