"""Train/validation/test splits of an interaction table that check themselves for leakage.

All splits work on (user, item) pairs: every event a user has on a held-out
item (a view, a like and a favourite of the same video) leaves train
together, so a test item is never also a training item of that user.

* :func:`leave_last_out` is per-user temporal: each user's items ordered by
  their first interaction (ties broken by item id, numerically for integer
  ids); the last goes to test,
  the second-to-last to validation.
* :func:`global_temporal` cuts the whole table at two points in time.
* :func:`random_holdout` holds out a seeded random fraction of each user's items.
* :func:`cold_start_items` holds out every interaction of a seeded fraction of
  items, which then have no training signal at all.

Every split runs :meth:`Split.check` before it is returned and logs its sizes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from vidrec_lab.constants import COL_ITEM, COL_TIMESTAMP, COL_USER, DEFAULT_SEED
from vidrec_lab.tables import DataError, fingerprint_frame, id_sort_key, require_columns

logger = logging.getLogger(__name__)

SPLIT_KINDS = ("leave_last_out", "global_temporal", "random_holdout", "cold_start_items")


class LeakageError(DataError):
    """Raised when a split puts held-out information into its training table."""


@dataclass
class Split:
    """Train, validation and test interactions plus what is needed to evaluate on them.

    Attributes:
        train, valid, test (pandas.DataFrame): Interaction tables (same columns).
        kind (str): One of :data:`SPLIT_KINDS`.
        params (dict): Arguments the split was made with (seed included).
        item_ids (list of str): The full catalog; full ranking scores all of them.
        cold_items (list of str): Items with no training interaction by design
            (cold-start split); empty for the other kinds.
        train_only_users (list of str): Users with too few items to hold any out,
            kept in train only.
        dropped_future_rows (int): Training rows removed because they came after
            the user's held-out item (temporal splits with several events per item).
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    kind: str
    params: dict
    item_ids: list[str]
    cold_items: list[str] = field(default_factory=list)
    train_only_users: list[str] = field(default_factory=list)
    dropped_future_rows: int = 0

    @property
    def is_temporal(self) -> bool:
        return self.kind in ("leave_last_out", "global_temporal")

    @property
    def candidate_items(self) -> list[str]:
        """Items that are ranked at test time: the cold items for a cold-start split, else the catalog."""
        return list(self.cold_items) if self.kind == "cold_start_items" else list(self.item_ids)

    def history(self, stage: str = "test") -> pd.DataFrame:
        """Return what a model may see about users when scoring ``stage``.

        For ``"test"`` that is train plus validation (everything a user did
        before the test item); for ``"valid"`` it is train alone.
        """
        if stage == "test":
            return pd.concat([self.train, self.valid], ignore_index=True)
        if stage == "valid":
            return self.train
        raise ValueError(f"stage must be 'valid' or 'test'; got {stage!r}")

    def targets(self, stage: str = "test") -> pd.DataFrame:
        """Return the held-out table for ``stage`` (``"valid"`` or ``"test"``)."""
        if stage == "test":
            return self.test
        if stage == "valid":
            return self.valid
        raise ValueError(f"stage must be 'valid' or 'test'; got {stage!r}")

    def fingerprint(self) -> str:
        """Return a digest of the three tables and the split settings.

        Results store it, so runs made on different splits are never compared.
        """
        parts = [fingerprint_frame(t, [COL_USER, COL_ITEM, COL_TIMESTAMP]) for t in (self.train, self.valid, self.test)]
        settings = repr(sorted(self.params.items())) + self.kind + ",".join(sorted(self.cold_items))
        return fingerprint_frame(pd.DataFrame({"p": parts + [settings]}))

    def sizes(self) -> dict:
        """Return rows, users and items per part, as logged after the split."""
        out = {"kind": self.kind}
        for name, table in (("train", self.train), ("valid", self.valid), ("test", self.test)):
            out[f"{name}_rows"] = int(len(table))
            out[f"{name}_users"] = int(table[COL_USER].nunique())
            out[f"{name}_items"] = int(table[COL_ITEM].nunique())
        out["train_only_users"] = len(self.train_only_users)
        out["cold_items"] = len(self.cold_items)
        out["dropped_future_rows"] = int(self.dropped_future_rows)
        return out

    def check(self) -> None:
        """Raise :class:`LeakageError` if held-out information reached the training table.

        Checks that no (user, item) pair of valid or test is in train, that no
        test pair is in valid, that cold items have no training row, and for
        temporal splits that no training row is later than the user's
        held-out rows.
        """
        for name, table in (("valid", self.valid), ("test", self.test)):
            leaked = _pairs_in(table, self.train)
            if leaked.any():
                row = table.iloc[int(np.flatnonzero(leaked)[0])]
                raise LeakageError(
                    f"{self.kind} split: {name} pair (user {row[COL_USER]!r}, item {row[COL_ITEM]!r}) "
                    f"is also in train ({int(leaked.sum())} leaked {name} rows)"
                )
        in_valid = _pairs_in(self.test, self.valid)
        if in_valid.any():
            row = self.test.iloc[int(np.flatnonzero(in_valid)[0])]
            raise LeakageError(
                f"{self.kind} split: test pair (user {row[COL_USER]!r}, item {row[COL_ITEM]!r}) is also in valid"
            )
        if self.cold_items:
            cold_in_train = self.train[COL_ITEM].isin(self.cold_items)
            if cold_in_train.any():
                item = self.train.loc[cold_in_train, COL_ITEM].iloc[0]
                raise LeakageError(f"{self.kind} split: cold item {item!r} has {int(cold_in_train.sum())} training rows")
        if self.is_temporal:
            self._check_time_order()

    def _check_time_order(self) -> None:
        held_out = pd.concat([self.valid, self.test], ignore_index=True)
        if held_out.empty or self.train.empty:
            return
        if self.kind == "global_temporal":
            latest_train = int(self.train[COL_TIMESTAMP].max())
            earliest_held = int(held_out[COL_TIMESTAMP].min())
            if latest_train > earliest_held:
                raise LeakageError(
                    f"global_temporal split: a training row at {latest_train} is later than a held-out row at {earliest_held}"
                )
            return
        first_held = held_out.groupby(COL_USER)[COL_TIMESTAMP].min()
        last_train = self.train.groupby(COL_USER)[COL_TIMESTAMP].max()
        joined = pd.concat([last_train.rename("train"), first_held.rename("held")], axis=1, join="inner")
        late = joined["train"] > joined["held"]
        if late.any():
            user = late.index[late.to_numpy()][0]
            raise LeakageError(
                f"leave_last_out split: user {user!r} has a training row at {int(joined.loc[user, 'train'])}, "
                f"later than their first held-out row at {int(joined.loc[user, 'held'])}"
            )


def _pair_index(table: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays([table[COL_USER].astype(str), table[COL_ITEM].astype(str)])


def _pairs_in(table: pd.DataFrame, reference: pd.DataFrame) -> np.ndarray:
    """Return a boolean mask of the rows of ``table`` whose (user, item) pair occurs in ``reference``."""
    return np.asarray(_pair_index(table).isin(_pair_index(reference)))


def _item_order(interactions: pd.DataFrame) -> pd.DataFrame:
    """Return one row per (user, item) with its first timestamp and its rank in the user's history."""
    pairs = (
        interactions.groupby([COL_USER, COL_ITEM], sort=False)[COL_TIMESTAMP]
        .min()
        .rename("first_ts")
        .reset_index()
    )
    pairs["_item_key"] = id_sort_key(pairs[COL_ITEM])
    pairs = pairs.sort_values([COL_USER, "first_ts", "_item_key"], kind="mergesort").drop(columns="_item_key")
    pairs["rank_from_end"] = pairs.groupby(COL_USER).cumcount(ascending=False)
    pairs["n_items"] = pairs.groupby(COL_USER)[COL_ITEM].transform("size")
    return pairs


def _assign(interactions: pd.DataFrame, pairs: pd.DataFrame, part: pd.Series) -> pd.Series:
    """Map each interaction row to the part ('train', 'valid', 'test') of its (user, item) pair."""
    labels = pd.Series(part.to_numpy(), index=pd.MultiIndex.from_frame(pairs[[COL_USER, COL_ITEM]]))
    index = pd.MultiIndex.from_frame(interactions[[COL_USER, COL_ITEM]])
    return pd.Series(labels.reindex(index).to_numpy(), index=interactions.index)


def _finish(interactions, parts, *, kind, params, item_ids, cold_items=(), train_only_users=(), drop_future=False) -> Split:
    train = interactions.loc[parts == "train"]
    valid = interactions.loc[parts == "valid"].reset_index(drop=True)
    test = interactions.loc[parts == "test"].reset_index(drop=True)
    dropped = 0
    if drop_future:
        # With several events per item, a user may like an old item after first watching
        # the held-out one; such later training rows would leak the future, so they go.
        held = pd.concat([valid, test]).groupby(COL_USER)[COL_TIMESTAMP].min()
        limit = train[COL_USER].map(held)
        future = (limit.notna() & (train[COL_TIMESTAMP] > limit)).to_numpy()
        dropped = int(future.sum())
        if dropped:
            logger.info("%s: dropped %d training rows later than the user's held-out item", kind, dropped)
        train = train.loc[~future]
    split = Split(
        train=train.reset_index(drop=True),
        valid=valid,
        test=test,
        kind=kind,
        params=params,
        item_ids=list(item_ids),
        cold_items=sorted(cold_items),
        train_only_users=sorted(train_only_users),
        dropped_future_rows=dropped,
    )
    split.check()
    logger.info("%s split: %s", kind, split.sizes())
    return split


def _catalog(interactions: pd.DataFrame, items: pd.DataFrame | None) -> list[str]:
    if items is not None:
        require_columns(items, [COL_ITEM], where="split(items)")
        return items[COL_ITEM].astype(str).tolist()
    return sorted(interactions[COL_ITEM].astype(str).unique())


def leave_last_out(interactions: pd.DataFrame, *, items: pd.DataFrame | None = None, min_items: int = 3) -> Split:
    """Hold out each user's last item for test and second-to-last for validation.

    A user's items are ordered by their first interaction, ties broken by
    item id, so the split does not depend on row order. Every event counts
    as an interaction (a 1-star rating too).

    Args:
        interactions (pandas.DataFrame): Validated interaction table.
        items (pandas.DataFrame, optional): Item table; its ids form the
            catalog (default: the items seen in ``interactions``).
        min_items (int): Users with fewer distinct items than this are kept
            in train only (default 3: one each for train, valid and test).

    Returns:
        Split: checked split; ``train_only_users`` lists the short histories.
    """
    require_columns(interactions, [COL_USER, COL_ITEM, COL_TIMESTAMP], where="leave_last_out(interactions)")
    if min_items < 3:
        raise ValueError(f"min_items must be at least 3 (train, valid and test need one item each); got {min_items}")
    pairs = _item_order(interactions)
    short = pairs["n_items"] < min_items
    part = np.where(short, "train", np.where(pairs["rank_from_end"] == 0, "test", np.where(pairs["rank_from_end"] == 1, "valid", "train")))
    parts = _assign(interactions, pairs, pd.Series(part))
    return _finish(
        interactions,
        parts,
        kind="leave_last_out",
        params={"min_items": min_items},
        item_ids=_catalog(interactions, items),
        train_only_users=pairs.loc[short, COL_USER].unique(),
        drop_future=True,
    )


def global_temporal(
    interactions: pd.DataFrame,
    *,
    items: pd.DataFrame | None = None,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> Split:
    """Cut the table at two global time points: the latest rows go to test, the ones before to validation.

    Rows are ordered by timestamp (ties by user and item); the last
    ``test_fraction`` of rows form test and the ``valid_fraction`` before them
    validation. Held-out pairs that already occur earlier in train are
    removed from the held-out part, since re-interactions are not new items.
    Users and items first seen after the cut stay in the held-out parts.
    """
    require_columns(interactions, [COL_USER, COL_ITEM, COL_TIMESTAMP], where="global_temporal(interactions)")
    for name, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1); got {value}")
    if valid_fraction + test_fraction >= 1.0:
        raise ValueError(f"valid_fraction + test_fraction must be below 1; got {valid_fraction + test_fraction}")
    ordered = interactions.sort_values([COL_TIMESTAMP, COL_USER, COL_ITEM], kind="mergesort")
    n = len(ordered)
    t_valid = ordered[COL_TIMESTAMP].iloc[int(n * (1 - valid_fraction - test_fraction))] if n else 0
    t_test = ordered[COL_TIMESTAMP].iloc[min(int(n * (1 - test_fraction)), n - 1)] if n else 0
    # Rows at exactly a cut time go to the later part, so train ends strictly before it.
    parts = pd.Series(np.where(interactions[COL_TIMESTAMP] >= t_test, "test", np.where(interactions[COL_TIMESTAMP] >= t_valid, "valid", "train")), index=interactions.index)
    repeat = _pairs_in(interactions, interactions.loc[parts == "train"]) & (parts != "train").to_numpy()
    parts[repeat] = "drop"
    parts[_pairs_in(interactions, interactions.loc[parts == "valid"]) & (parts == "test").to_numpy()] = "drop"
    if repeat.any():
        logger.info("global_temporal: removed %d held-out rows whose (user, item) pair is already in train", int(repeat.sum()))
    return _finish(
        interactions,
        parts,
        kind="global_temporal",
        params={"valid_fraction": valid_fraction, "test_fraction": test_fraction, "valid_start": int(t_valid), "test_start": int(t_test)},
        item_ids=_catalog(interactions, items),
    )


def random_holdout(
    interactions: pd.DataFrame,
    *,
    items: pd.DataFrame | None = None,
    test_fraction: float = 0.2,
    valid_fraction: float = 0.1,
    min_items: int = 3,
    seed: int = DEFAULT_SEED,
) -> Split:
    """Hold out a seeded random fraction of each user's items (at least one each for valid and test).

    Users with fewer than ``min_items`` distinct items stay in train only.
    Not temporal: training rows may be later than held-out ones, which is
    the usual setting of older papers and optimistic for sequential models.
    """
    require_columns(interactions, [COL_USER, COL_ITEM], where="random_holdout(interactions)")
    if not (0 < test_fraction < 1 and 0 <= valid_fraction < 1 and test_fraction + valid_fraction < 1):
        raise ValueError(
            f"fractions must satisfy 0 < test_fraction, 0 <= valid_fraction, sum < 1; got test={test_fraction}, valid={valid_fraction}"
        )
    if min_items < 3:
        raise ValueError(f"min_items must be at least 3; got {min_items}")
    rng = np.random.default_rng(seed)
    pairs = interactions[[COL_USER, COL_ITEM]].drop_duplicates().sort_values([COL_USER, COL_ITEM], kind="mergesort").reset_index(drop=True)
    pairs["n_items"] = pairs.groupby(COL_USER)[COL_ITEM].transform("size")
    # A random key per pair, ranked within the user, decides the held-out items without a loop over users.
    pairs["order"] = rng.random(len(pairs))
    pairs["rank"] = pairs.groupby(COL_USER)["order"].rank(method="first").astype(int) - 1
    n_test = np.maximum(1, np.floor(pairs["n_items"] * test_fraction)).astype(int)
    n_valid = np.maximum(1 if valid_fraction > 0 else 0, np.floor(pairs["n_items"] * valid_fraction)).astype(int)
    short = pairs["n_items"] < min_items
    part = np.where(short, "train", np.where(pairs["rank"] < n_test, "test", np.where(pairs["rank"] < n_test + n_valid, "valid", "train")))
    parts = _assign(interactions, pairs, pd.Series(part))
    return _finish(
        interactions,
        parts,
        kind="random_holdout",
        params={"test_fraction": test_fraction, "valid_fraction": valid_fraction, "min_items": min_items, "seed": seed},
        item_ids=_catalog(interactions, items),
        train_only_users=pairs.loc[short, COL_USER].unique(),
    )


def cold_start_items(
    interactions: pd.DataFrame,
    *,
    items: pd.DataFrame | None = None,
    fraction: float = 0.1,
    min_item_interactions: int = 5,
    valid_fraction: float = 0.0,
    seed: int = DEFAULT_SEED,
) -> Split:
    """Make a seeded ``fraction`` of the items cold: every interaction with them leaves train.

    Cold items are drawn among items with at least ``min_item_interactions``
    distinct users, so each has test users. A ``valid_fraction`` of the cold
    items (default none) goes to validation instead of test. At test time the
    candidates are the cold items only (:attr:`Split.candidate_items`), and
    every user with a cold interaction is a test user whose targets are those
    items. ID-only models cannot score cold items; content models can.
    """
    require_columns(interactions, [COL_USER, COL_ITEM], where="cold_start_items(interactions)")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1); got {fraction}")
    if not 0 <= valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in [0, 1); got {valid_fraction}")
    counts = interactions.groupby(COL_ITEM)[COL_USER].nunique()
    eligible = np.array(sorted(counts.index[counts >= min_item_interactions].astype(str)))
    n_cold = int(round(fraction * len(eligible)))
    if n_cold == 0:
        raise DataError(
            f"cold_start_items: no item can be made cold ({len(eligible)} items have at least "
            f"{min_item_interactions} users; fraction {fraction} of them rounds to 0)"
        )
    rng = np.random.default_rng(seed)
    cold = rng.permutation(eligible)[:n_cold]
    n_valid_items = int(round(valid_fraction * n_cold))
    valid_items, test_items = set(cold[:n_valid_items]), set(cold[n_valid_items:])
    item = interactions[COL_ITEM].astype(str)
    parts = pd.Series(np.where(item.isin(test_items), "test", np.where(item.isin(valid_items), "valid", "train")), index=interactions.index)
    return _finish(
        interactions,
        parts,
        kind="cold_start_items",
        params={"fraction": fraction, "min_item_interactions": min_item_interactions, "valid_fraction": valid_fraction, "seed": seed},
        item_ids=_catalog(interactions, items),
        cold_items=sorted(test_items),
    )


def make_split(kind: str, interactions: pd.DataFrame, **kwargs) -> Split:
    """Build a split by name: one of :data:`SPLIT_KINDS`."""
    builders = {
        "leave_last_out": leave_last_out,
        "global_temporal": global_temporal,
        "random_holdout": random_holdout,
        "cold_start_items": cold_start_items,
    }
    if kind not in builders:
        raise ValueError(f"split kind must be one of {list(SPLIT_KINDS)}; got {kind!r}")
    return builders[kind](interactions, **kwargs)
