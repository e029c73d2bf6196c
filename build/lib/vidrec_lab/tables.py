"""The three tables every module shares, and the checks that keep them valid.

* items: ``item_id`` (str), ``title``, ``description``, ``tags`` (list of str),
  ``genres`` (list of str), ``year`` (nullable int), ``video_path``,
  ``cover_path``, ``audio_path`` (str or None).
* users: ``user_id`` (str) plus whatever attributes the source has.
* interactions: ``user_id``, ``item_id``, ``timestamp`` (int seconds),
  ``event`` (``view``, ``like``, ``favorite``, ``rating``, ...), ``value``
  (float), sorted by time.

Loaders build these tables and pass them through :func:`validate_items`,
:func:`validate_users` and :func:`validate_interactions`; later steps call
:func:`require_columns` on entry.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pandas as pd

from vidrec_lab.constants import (
    COL_AUDIO_PATH,
    COL_COVER_PATH,
    COL_DESCRIPTION,
    COL_EVENT,
    COL_GENRES,
    COL_ITEM,
    COL_TAGS,
    COL_TIMESTAMP,
    COL_TITLE,
    COL_USER,
    COL_VALUE,
    COL_VIDEO_PATH,
    COL_YEAR,
    INTERACTION_COLUMNS,
    ITEM_COLUMNS,
)

logger = logging.getLogger(__name__)


class DataError(ValueError):
    """Raised when a file or table does not have the content a step expects."""


class MissingColumnsError(DataError):
    """Raised when a table lacks columns a function needs."""


def require_columns(df: pd.DataFrame, columns: Iterable[str], *, where: str) -> None:
    """Raise :class:`MissingColumnsError` unless ``df`` has every name in ``columns``.

    Args:
        df (pandas.DataFrame): Table to check.
        columns (iterable of str): Required column names.
        where (str): Caller and table, for the message (``"evaluate(interactions)"``).
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{where}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MissingColumnsError(
            f"{where}: missing column(s) {missing}; found {list(df.columns)}"
        )


def _as_str_ids(values: pd.Series, *, where: str, column: str) -> pd.Series:
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise DataError(f"{where}: column '{column}' is empty at row {row}; every row needs an id")
    return values.astype(str)


def _as_list_column(values: pd.Series, *, where: str, column: str) -> pd.Series:
    def to_list(value, row):
        if isinstance(value, (list, tuple, np.ndarray)):
            return [str(v) for v in value]
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return []
        raise DataError(
            f"{where}: column '{column}' at row {row} holds {value!r}; expected a list of strings"
        )

    return pd.Series([to_list(v, i) for i, v in enumerate(values)], index=values.index, dtype=object)


def validate_items(items: pd.DataFrame, *, where: str = "items") -> pd.DataFrame:
    """Return a checked copy of an item table with every optional column present.

    Missing optional columns are added with empty values (``""``, ``[]``,
    ``<NA>`` or ``None``); the caller's frame is not changed.

    Raises:
        DataError: on a missing ``item_id`` column, an empty id, a duplicate id
            or a list column holding something other than lists.
    """
    require_columns(items, [COL_ITEM], where=where)
    out = items.copy()
    out[COL_ITEM] = _as_str_ids(out[COL_ITEM], where=where, column=COL_ITEM)
    duplicated = out[COL_ITEM].duplicated()
    if duplicated.any():
        first = out.loc[duplicated, COL_ITEM].iloc[0]
        raise DataError(f"{where}: item_id {first!r} appears more than once; item ids must be unique")
    for column in (COL_TITLE, COL_DESCRIPTION):
        if column not in out.columns:
            out[column] = ""
        out[column] = out[column].fillna("").astype(str)
    for column in (COL_TAGS, COL_GENRES):
        if column not in out.columns:
            out[column] = pd.Series([[] for _ in range(len(out))], index=out.index, dtype=object)
        out[column] = _as_list_column(out[column], where=where, column=column)
    if COL_YEAR not in out.columns:
        out[COL_YEAR] = pd.NA
    out[COL_YEAR] = pd.to_numeric(out[COL_YEAR], errors="coerce").astype("Int64")
    for column in (COL_VIDEO_PATH, COL_COVER_PATH, COL_AUDIO_PATH):
        if column not in out.columns:
            out[column] = None
        out[column] = out[column].astype(object).where(out[column].notna(), None)
    extra = [c for c in out.columns if c not in ITEM_COLUMNS]
    return out[list(ITEM_COLUMNS) + extra].reset_index(drop=True)


def validate_users(users: pd.DataFrame, *, where: str = "users") -> pd.DataFrame:
    """Return a checked copy of a user table (string ids, unique)."""
    require_columns(users, [COL_USER], where=where)
    out = users.copy()
    out[COL_USER] = _as_str_ids(out[COL_USER], where=where, column=COL_USER)
    duplicated = out[COL_USER].duplicated()
    if duplicated.any():
        first = out.loc[duplicated, COL_USER].iloc[0]
        raise DataError(f"{where}: user_id {first!r} appears more than once; user ids must be unique")
    extra = [c for c in out.columns if c != COL_USER]
    return out[[COL_USER] + extra].reset_index(drop=True)


def validate_interactions(
    interactions: pd.DataFrame,
    *,
    items: pd.DataFrame | None = None,
    where: str = "interactions",
) -> pd.DataFrame:
    """Return a checked interaction table: typed columns, known items, no duplicates, time order.

    Rows are sorted by ``timestamp``, then ``user_id`` and ``item_id`` (numeric
    order for integer ids, see :func:`id_sort_key`) so the order does not
    depend on the input order. Exact duplicates of
    (user, item, timestamp, event) are dropped, keeping the last row, and the
    number dropped is logged.

    Args:
        interactions (pandas.DataFrame): Table with the interaction columns.
        items (pandas.DataFrame, optional): When given, every ``item_id`` must
            appear in it.
        where (str): Name used in messages, usually the source file.

    Raises:
        DataError: on a missing column, an empty id, a timestamp or value that
            is not a number, or an item id not in ``items``.
    """
    require_columns(interactions, INTERACTION_COLUMNS, where=where)
    out = interactions[list(INTERACTION_COLUMNS)].copy()
    out[COL_USER] = _as_str_ids(out[COL_USER], where=where, column=COL_USER)
    out[COL_ITEM] = _as_str_ids(out[COL_ITEM], where=where, column=COL_ITEM)
    for column in (COL_TIMESTAMP, COL_VALUE):
        numeric = pd.to_numeric(out[column], errors="coerce")
        bad = numeric.isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{where}: column '{column}' at row {row} holds {out[column].iloc[row]!r}; "
                "expected a number"
            )
        out[column] = numeric
    out[COL_TIMESTAMP] = out[COL_TIMESTAMP].astype("int64")
    out[COL_VALUE] = out[COL_VALUE].astype("float64")
    out[COL_EVENT] = out[COL_EVENT].fillna("").astype(str)
    if items is not None:
        known = set(items[COL_ITEM].astype(str))
        unknown = ~out[COL_ITEM].isin(known).to_numpy()
        if unknown.any():
            row = int(np.flatnonzero(unknown)[0])
            raise DataError(
                f"{where}: item_id {out[COL_ITEM].iloc[row]!r} at row {row} is not in the item table "
                f"({int(unknown.sum())} rows with unknown items in all)"
            )
    key = [COL_USER, COL_ITEM, COL_TIMESTAMP, COL_EVENT]
    duplicated = out.duplicated(subset=key, keep="last")
    if duplicated.any():
        logger.warning(
            "%s: dropped %d duplicate (user_id, item_id, timestamp, event) rows, keeping the last of each",
            where,
            int(duplicated.sum()),
        )
        out = out.loc[~duplicated]
    order = pd.DataFrame(
        {"t": out[COL_TIMESTAMP].to_numpy(), "u": id_sort_key(out[COL_USER]).to_numpy(), "i": id_sort_key(out[COL_ITEM]).to_numpy()}
    ).sort_values(["t", "u", "i"], kind="mergesort")
    out = out.iloc[order.index.to_numpy()]
    return out.reset_index(drop=True)


def id_sort_key(ids: pd.Series) -> pd.Series:
    """Return a key that sorts ids numerically when all are integers, else as strings.

    MovieLens ids are digit strings: sorting them as text would put "10"
    before "9" and change which item wins a timestamp tie in a split.
    """
    text = ids.astype(str)
    codes, uniques = pd.factorize(text)  # the check runs once per distinct id, not per row
    unique_text = pd.Series(uniques, dtype=str)
    if len(unique_text) and unique_text.str.fullmatch(r"\d{1,18}").all():
        return pd.Series(unique_text.astype("int64").to_numpy()[codes], index=ids.index)
    return text


def fingerprint_frame(df: pd.DataFrame, columns: Iterable[str] | None = None) -> str:
    """Return a short SHA-256 hex digest of a table's content (row order matters)."""
    columns = list(df.columns if columns is None else columns)
    digest = hashlib.sha256()
    digest.update("\x1f".join(columns).encode())
    for column in columns:
        digest.update(pd.util.hash_pandas_object(df[column].astype(str), index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class Dataset:
    """A named set of validated item, user and interaction tables.

    Attributes:
        name (str): Short dataset name (``"ml-100k"``, ``"synthetic"``).
        items, users, interactions (pandas.DataFrame): The validated tables.
        source (str): Folder, archive or generator the tables came from.
        info (dict): Loader notes (file checksums, generator parameters, ...).
    """

    name: str
    items: pd.DataFrame
    users: pd.DataFrame
    interactions: pd.DataFrame
    source: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"Dataset {self.name!r}"
        self.items = validate_items(self.items, where=f"{where} items")
        self.users = validate_users(self.users, where=f"{where} users")
        self.interactions = validate_interactions(
            self.interactions, items=self.items, where=f"{where} interactions"
        )

    @property
    def has_interactions(self) -> bool:
        return len(self.interactions) > 0

    def summary(self) -> dict:
        """Return counts and density as a plain dict (for tables and logs)."""
        n_users = int(self.interactions[COL_USER].nunique())
        n_items = int(self.items[COL_ITEM].nunique())
        n_interactions = int(len(self.interactions))
        density = n_interactions / (n_users * n_items) if n_users and n_items else 0.0
        return {
            "dataset": self.name,
            "users": n_users,
            "items": n_items,
            "interactions": n_interactions,
            "density": round(density, 6),
            "events": self.interactions[COL_EVENT].value_counts().to_dict(),
        }

    def fingerprint(self) -> str:
        """Return a digest of the interactions and item ids, to tie results to their data."""
        return fingerprint_frame(self.interactions) + fingerprint_frame(self.items, [COL_ITEM])[:8]
