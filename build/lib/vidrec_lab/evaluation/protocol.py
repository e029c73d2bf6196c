"""One evaluation protocol for every model: same users, same candidates, same metrics.

:func:`evaluate` ranks the held-out items of a :class:`~vidrec_lab.splits.Split`
with each recommender and returns an :class:`EvaluationResult`:

* ``mode="full"`` (the default) ranks every candidate item of the split
  (the catalog, or the cold items of a cold-start split) with the user's
  seen items excluded. "Seen" and the history the model reads are both
  ``split.history(stage)``, which is train plus validation at test time.
* ``mode="sampled"`` ranks each held-out item among ``n_negatives`` seeded
  random unseen candidates. It is cheaper but inflates every metric and can
  change the order of models, so every row of the result carries
  ``mode="sampled"`` and a warning is logged.

Targets are ``split.targets(stage)`` restricted to the candidate items, each
(user, item) pair once. All models are scored on the same users, so their
per-user values are paired and :mod:`vidrec_lab.evaluation.significance`
can test differences.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from vidrec_lab.constants import COL_ITEM, COL_USER, DEFAULT_SEED
from vidrec_lab.evaluation.metrics import (
    catalog_coverage,
    check_metric_names,
    gini_exposure,
    intra_list_diversity,
    item_probability,
    novelty,
    popularity_bias,
    ranking_metrics,
)
from vidrec_lab.evaluation.significance import bootstrap_ci, compare_models
from vidrec_lab.io import read_metrics, write_metrics
from vidrec_lab.recommend import COL_RANK
from vidrec_lab.splits import Split
from vidrec_lab.tables import DataError

logger = logging.getLogger(__name__)

MODES = ("full", "sampled")
STAGES = ("valid", "test")
DEFAULT_METRICS = ("recall", "ndcg", "mrr", "precision", "hit_rate", "map", "f1")
USER_SEGMENTS = ("low", "mid", "high")  # tertiles of history length
ITEM_SEGMENTS = ("head", "mid", "tail", "cold")
# Head items are the most popular ones that together account for the first third of history
# interactions. Mid items account for the second third and tail items for the rest. Cold items have none.
_POPULARITY_SHARES = (1 / 3, 2 / 3)
# Random keys and score blocks are built for at most this many (row x candidate) cells at once.
_BLOCK_CELLS = 4_000_000

TABLE_COLUMNS = ["model", "metric", "k", "value", "ci_low", "ci_high", "mode", "stage", "n_users", "scores_cold_items"]


class IncomparableResultsError(ValueError):
    """Raised when two evaluation results were made on different splits or settings."""


# --------------------------------------------------------------------------- result


def _records(frame: pd.DataFrame) -> list[dict]:
    """Return the rows as dicts with NaN turned into None, so the JSON stays standard."""
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


@dataclass
class EvaluationResult:
    """Everything :func:`evaluate` measured, tied to the split it was measured on.

    Attributes:
        table (pandas.DataFrame): One row per (model, metric, k) with ``value``
            (mean over users), ``ci_low``/``ci_high`` (percentile bootstrap),
            ``mode``, ``stage``, ``n_users`` and ``scores_cold_items``.
        per_user (pandas.DataFrame): ``model, user_id, metric, k, value``, the
            input of :func:`~vidrec_lab.evaluation.significance.compare_models`.
        beyond (pandas.DataFrame): Beyond-accuracy metrics per (model, metric, k).
        segments (pandas.DataFrame): Ranking metrics per user-activity tertile
            and per popularity bucket of the target item.
        split_fingerprint (str): :meth:`Split.fingerprint` of the evaluated split.
        params (dict): Settings of the run (ks, metrics, mode, seed, ...).
        timings (dict): Seconds each model took, keyed by model name.
    """

    table: pd.DataFrame
    per_user: pd.DataFrame
    beyond: pd.DataFrame
    segments: pd.DataFrame
    split_fingerprint: str
    params: dict
    timings: dict = field(default_factory=dict)

    def pivot(self, value: str = "value") -> pd.DataFrame:
        """Return ``value`` as a models x ``metric@k`` table, for display."""
        wide = self.table.assign(column=self.table["metric"] + "@" + self.table["k"].astype(str))
        out = wide.pivot(index="model", columns="column", values=value)
        return out.reindex(index=pd.unique(self.table["model"]), columns=pd.unique(wide["column"]))

    def check_comparable(self, other: "EvaluationResult") -> None:
        """Raise :class:`IncomparableResultsError` unless ``other`` used the same split, stage and mode."""
        if self.split_fingerprint != other.split_fingerprint:
            raise IncomparableResultsError(
                f"results were made on different splits (fingerprints {self.split_fingerprint} and "
                f"{other.split_fingerprint}); evaluate both on the same Split to compare them"
            )
        for key in ("stage", "mode"):
            if self.params.get(key) != other.params.get(key):
                raise IncomparableResultsError(
                    f"results differ in {key} ({self.params.get(key)!r} and {other.params.get(key)!r}); "
                    f"evaluate both with the same {key} to compare them"
                )

    def compare(self, other: "EvaluationResult") -> pd.DataFrame:
        """Return this table joined with ``other``'s on (model, metric, k), with their difference.

        Raises:
            IncomparableResultsError: when the results come from different
                splits, stages or modes.
        """
        self.check_comparable(other)
        keys = ["model", "metric", "k"]
        joined = self.table[keys + ["value"]].merge(
            other.table[keys + ["value"]], on=keys, how="outer", suffixes=("", "_other")
        )
        joined["difference"] = joined["value"] - joined["value_other"]
        return joined

    def significance(self, metric: str, k: int, baseline: str | None = None, correction: str = "holm", *, method: str = "wilcoxon") -> pd.DataFrame:
        """Test pairwise model differences on ``metric@k`` with :func:`compare_models`.

        The interval of each difference uses this result's ``n_bootstrap``
        and ``seed`` (1000 resamples when the evaluation skipped intervals).
        """
        if self.per_user.empty:
            raise DataError("this result has no per-user values (it was saved without them), so models cannot be tested")
        n_bootstrap = int(self.params.get("n_bootstrap") or 1000)
        return compare_models(
            self.per_user,
            metric,
            k,
            baseline,
            correction,
            method=method,
            n_bootstrap=n_bootstrap,
            seed=int(self.params.get("seed", DEFAULT_SEED)),
        )

    def _payload(self, include_per_user: bool) -> tuple[dict, dict]:
        metrics = {"table": _records(self.table), "beyond": _records(self.beyond), "segments": _records(self.segments)}
        if include_per_user:
            metrics["per_user"] = _records(self.per_user)
        params = {**self.params, "split_fingerprint": self.split_fingerprint, "timings_s": self.timings}
        return metrics, params

    def save(self, name: str, *, folder: str | Path | None = None, include_per_user: bool = False) -> Path:
        """Write the result to ``outputs/metrics/<name>.json`` (or ``folder``) through :func:`write_metrics`.

        Args:
            name (str): File stem.
            folder (path, optional): Target folder; default ``outputs/metrics``.
            include_per_user (bool): Also store the per-user values, which a
                reloaded result needs for significance tests. They add
                users x models x metrics x ks rows to the file.

        Returns:
            pathlib.Path: The file written.
        """
        metrics, params = self._payload(include_per_user)
        return write_metrics(name, metrics, params=params, folder=folder)

    def to_json(self, path: str | Path, *, include_per_user: bool = False) -> Path:
        """Write the result to ``path`` (which must end in ``.json``); see :meth:`save`."""
        path = Path(path)
        if path.suffix != ".json":
            raise ValueError(f"to_json: path must end in '.json'; got {str(path)!r}")
        return self.save(path.stem, folder=path.parent, include_per_user=include_per_user)

    @classmethod
    def from_json(cls, path: str | Path) -> "EvaluationResult":
        """Read a result written by :meth:`save` or :meth:`to_json`."""
        payload = read_metrics(Path(path))
        metrics = payload.get("metrics")
        if not isinstance(metrics, dict) or "table" not in metrics:
            raise DataError(f"{path}: not an evaluation result (no 'metrics.table' entry); write it with EvaluationResult.save")
        params = dict(payload.get("params", {}))
        fingerprint = params.pop("split_fingerprint", "")
        timings = params.pop("timings_s", {})

        def frame(key: str, columns: list[str]) -> pd.DataFrame:
            table = pd.DataFrame.from_records(metrics.get(key) or [], columns=columns)
            # JSON stores NaN as null, which would otherwise come back as None in an object column.
            for column in ("value", "ci_low", "ci_high"):
                if column in table.columns:
                    table[column] = table[column].astype(np.float64)
            return table

        return cls(
            table=frame("table", TABLE_COLUMNS),
            per_user=frame("per_user", ["model", COL_USER, "metric", "k", "value"]),
            beyond=frame("beyond", ["model", "metric", "k", "value", "mode", "stage", "n_users"]),
            segments=frame("segments", ["model", "segment_kind", "segment", "metric", "k", "value", "ci_low", "ci_high", "n_users"]),
            split_fingerprint=fingerprint,
            params=params,
            timings=timings,
        )


# --------------------------------------------------------------------------- checks


def _check_option(name: str, value, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}; got {value!r}")


def _check_ks(ks) -> list[int]:
    if isinstance(ks, (int, np.integer)):
        ks = (ks,)
    ks = list(ks)
    if not ks:
        raise ValueError("ks must name at least one cut-off K")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"every K in ks must be a positive integer; got {k!r}")
    return sorted({int(k) for k in ks})


def _named_models(recommenders) -> dict:
    if isinstance(recommenders, Mapping):
        models = {str(name): model for name, model in recommenders.items()}
    else:
        models = {}
        for model in recommenders:
            name = str(getattr(model, "name", type(model).__name__))
            if name in models:
                raise ValueError(f"two recommenders are both named {name!r}; pass a dict {{name: model}} to tell them apart")
            models[name] = model
    if not models:
        raise ValueError("recommenders is empty; pass at least one fitted Recommender")
    for name, model in models.items():
        if not (hasattr(model, "recommend") and hasattr(model, "score")):
            raise TypeError(f"recommender {name!r} is a {type(model).__name__}; expected a vidrec_lab.recommend.Recommender")
    return models


def _check_catalog(name: str, model, candidates: list[str]) -> None:
    if not hasattr(model, "item_ids_"):
        raise RuntimeError(f"recommender {name!r} is not fitted; call fit(split.train, items=...) before evaluate")
    known = set(model.item_ids_)
    missing = [item for item in candidates if item not in known]
    if missing:
        raise DataError(
            f"recommender {name!r} has no score column for {len(missing)} of the {len(candidates)} candidate items, "
            f"e.g. {missing[:3]}; fit it with items=<the dataset's item table> so the whole catalog is known"
        )


# --------------------------------------------------------------------------- segments


def _activity_tertiles(history: pd.DataFrame, users: pd.Index) -> pd.Series:
    """Label each user ``low``, ``mid`` or ``high`` by tertile of distinct items in their history.

    Users are sorted by history length, ties by user id, and cut into three
    equal-sized groups, so users with the same length can land in adjacent
    groups.
    """
    activity = history.groupby(history[COL_USER].astype(str))[COL_ITEM].nunique().reindex(users, fill_value=0)
    order = pd.DataFrame({"user": users, "activity": activity.to_numpy()}).sort_values(["activity", "user"], kind="mergesort")
    position = np.arange(len(order))
    labels = np.asarray(USER_SEGMENTS, dtype=object)[(3 * position) // max(len(order), 1)]
    return pd.Series(labels, index=order["user"].to_numpy()).reindex(users)


def _popularity_buckets(history: pd.DataFrame, candidates: list[str]) -> pd.Series:
    """Label each candidate item ``head``, ``mid``, ``tail`` or ``cold`` by its popularity in ``history``."""
    pairs = pd.DataFrame({COL_USER: history[COL_USER].astype(str), COL_ITEM: history[COL_ITEM].astype(str)}).drop_duplicates()
    counts = pairs.groupby(COL_ITEM).size().reindex(pd.Index(candidates), fill_value=0)
    ordered = pd.DataFrame({"item": counts.index, "count": counts.to_numpy()}).sort_values(
        ["count", "item"], ascending=[False, True], kind="mergesort"
    )
    total = max(int(ordered["count"].sum()), 1)
    share_before = (ordered["count"].cumsum() - ordered["count"]).to_numpy() / total
    labels = np.where(share_before < _POPULARITY_SHARES[0], "head", np.where(share_before < _POPULARITY_SHARES[1], "mid", "tail"))
    labels = np.where(ordered["count"].to_numpy() == 0, "cold", labels)
    return pd.Series(labels, index=ordered["item"].to_numpy()).reindex(candidates)


# --------------------------------------------------------------------------- sampled mode


@dataclass
class _Negatives:
    """Seeded negatives for sampled ranking, one row per target pair (rows sorted by user)."""

    user_rows: np.ndarray  # (n_targets,) position of the user in the evaluated users
    target_columns: np.ndarray  # (n_targets,) position of the target item among the candidates
    negative_columns: np.ndarray  # (n_targets, n_negatives) candidate positions, -1 where none was left


def _sample_negatives(targets, history, users: pd.Index, candidates: list[str], n_negatives: int, seed: int) -> _Negatives:
    candidate_index = pd.Index(candidates)
    n_candidates = len(candidate_index)
    seen = pd.concat([history[[COL_USER, COL_ITEM]], targets[[COL_USER, COL_ITEM]]], ignore_index=True)
    rows = users.get_indexer(seen[COL_USER].astype(str).to_numpy())
    columns = candidate_index.get_indexer(seen[COL_ITEM].astype(str).to_numpy())
    keep = (rows >= 0) & (columns >= 0)
    forbidden = sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=bool), (rows[keep], columns[keep])), shape=(len(users), n_candidates)
    )

    user_rows = users.get_indexer(targets[COL_USER].to_numpy())
    target_columns = candidate_index.get_indexer(targets[COL_ITEM].to_numpy())
    n_draw = min(n_negatives, n_candidates)
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // n_candidates)
    picks = []
    for start in range(0, len(user_rows), block):
        stop = min(start + block, len(user_rows))
        # A uniform random key per candidate, forbidden ones pushed past 1: the n smallest keys
        # are a uniform sample without replacement of the allowed candidates.
        keys = rng.random((stop - start, n_candidates))
        keys[forbidden[user_rows[start:stop]].toarray()] = 2.0
        chosen = np.argpartition(keys, n_draw - 1, axis=1)[:, :n_draw]
        chosen[np.take_along_axis(keys, chosen, axis=1) > 1.0] = -1
        picks.append(chosen)
    negative_columns = np.vstack(picks) if picks else np.zeros((0, n_draw), dtype=np.int64)
    if n_draw < n_negatives:
        n_short = len(user_rows)
    else:
        n_short = int((negative_columns < 0).any(axis=1).sum())
    if n_short:
        logger.warning(
            "sampled mode: %d of %d targets have fewer than %d unseen candidate items; they are ranked among those available",
            n_short,
            len(user_rows),
            n_negatives,
        )
    return _Negatives(user_rows=user_rows, target_columns=target_columns, negative_columns=negative_columns)


def _sampled_ranks(name: str, model, negatives: _Negatives, users: pd.Index, history, candidates: list[str]) -> np.ndarray:
    """Return the rank of each target among its negatives (1 = scored above all of them).

    A negative outranks the target when its score is higher, or equal with a
    lower candidate position, the tie rule of ``Recommender.recommend``.
    """
    ranks = np.zeros(len(negatives.user_rows), dtype=np.int64)
    block = max(1, _BLOCK_CELLS // max(len(candidates), 1))
    bounds = np.searchsorted(negatives.user_rows, np.arange(0, len(users) + block, block))
    for chunk, start in enumerate(range(0, len(users), block)):
        row_start, row_stop = bounds[chunk], bounds[chunk + 1]
        if row_start == row_stop:
            continue
        scores = np.asarray(model.score(list(users[start : start + block]), candidates, history=history), dtype=np.float64)
        if np.isnan(scores).any():
            raise DataError(f"recommender {name!r} returned NaN scores; sampled ranking needs comparable scores")
        local = negatives.user_rows[row_start:row_stop] - start
        target = negatives.target_columns[row_start:row_stop]
        negative = negatives.negative_columns[row_start:row_stop]
        valid = negative >= 0
        target_score = scores[local, target][:, None]
        negative_score = scores[local[:, None], np.where(valid, negative, 0)]
        ahead = valid & ((negative_score > target_score) | ((negative_score == target_score) & (negative < target[:, None])))
        ranks[row_start:row_stop] = 1 + ahead.sum(axis=1)
    return ranks


# --------------------------------------------------------------------------- per model


def _per_user_values(ranked, relevant, unit_user: pd.Series | None, ks, metrics) -> pd.DataFrame:
    """Return per-user metric values, wide: index user id, columns (metric, k).

    In sampled mode each target is its own ranking unit; a user's value is
    the mean over their units.
    """
    long = ranking_metrics(ranked, relevant, ks=ks, metrics=metrics, per_user=True)
    wide = long.pivot_table(index=COL_USER, columns=["metric", "k"], values="value", aggfunc="first")
    wide = wide.reindex(columns=pd.MultiIndex.from_product([list(metrics), list(ks)], names=["metric", "k"]))
    if unit_user is not None:
        wide = wide.groupby(unit_user.reindex(wide.index).to_numpy()).mean()
        wide.index.name = COL_USER
    return wide


def _summary_rows(wide: pd.DataFrame, n_bootstrap: int, seed: int) -> pd.DataFrame:
    """Return ``metric, k, value, ci_low, ci_high, n_users`` from a wide per-user table."""
    values = wide.to_numpy(dtype=np.float64)
    if n_bootstrap > 0:
        mean, low, high = bootstrap_ci(values, n_bootstrap=n_bootstrap, seed=seed)
    else:
        mean = values.mean(axis=0)
        low = high = np.full(values.shape[1], np.nan)
    return pd.DataFrame(
        {
            "metric": wide.columns.get_level_values("metric"),
            "k": wide.columns.get_level_values("k").astype(int),
            "value": mean,
            "ci_low": low,
            "ci_high": high,
            "n_users": len(wide),
        }
    )


def _beyond_rows(recs: pd.DataFrame, ks, candidates, history, probabilities, item_vectors) -> list[dict]:
    rows = []
    n_users = int(recs[COL_USER].nunique())
    for k in ks:
        values = {
            "coverage": catalog_coverage(recs, len(candidates), k=k),
            "gini": gini_exposure(recs, candidates, k=k),
            "novelty": novelty(recs, probabilities, k=k),
        }
        if item_vectors is not None:
            values["diversity"] = intra_list_diversity(recs, item_vectors, k=k)
        bias = popularity_bias(recs, history, k=k)
        values["popularity_recommended"] = bias["recommended"]
        values["popularity_history"] = bias["history"]
        values["popularity_ratio"] = bias["ratio"]
        rows += [{"metric": metric, "k": k, "value": value, "n_users": n_users} for metric, value in values.items()]
    return rows


def _segment_frames(wide, ranked, relevant, unit_user, user_segment, item_segment, ks, metrics, n_bootstrap, seed) -> list[pd.DataFrame]:
    frames = []
    for segment in USER_SEGMENTS:
        members = user_segment.index[user_segment.to_numpy() == segment]
        part = wide.loc[wide.index.isin(members)]
        if len(part):
            frames.append(_summary_rows(part, n_bootstrap, seed).assign(segment_kind="user_activity", segment=segment))
    bucket = relevant[COL_ITEM].map(item_segment).to_numpy()
    for segment in ITEM_SEGMENTS:
        subset = relevant.loc[bucket == segment]
        if subset.empty:
            continue
        part = _per_user_values(ranked, subset, unit_user, ks, metrics)
        frames.append(_summary_rows(part, n_bootstrap, seed).assign(segment_kind="item_popularity", segment=segment))
    return frames


# --------------------------------------------------------------------------- protocol


def _targets(split: Split, stage: str, candidates: list[str]) -> pd.DataFrame:
    held_out = split.targets(stage)
    pairs = pd.DataFrame({COL_USER: held_out[COL_USER].astype(str), COL_ITEM: held_out[COL_ITEM].astype(str)})
    pairs = pairs.loc[pairs[COL_ITEM].isin(set(candidates))].drop_duplicates()
    if pairs.empty:
        raise DataError(
            f"{split.kind} split: the {stage} table has no (user, item) pair among the {len(candidates)} candidate items, "
            "so there is nothing to evaluate"
        )
    return pairs.sort_values([COL_USER, COL_ITEM], kind="mergesort").reset_index(drop=True)


def evaluate(
    recommenders,
    split: Split,
    *,
    ks: Sequence[int] = (5, 10, 20),
    metrics: Sequence[str] = DEFAULT_METRICS,
    stage: str = "test",
    mode: str = "full",
    n_negatives: int = 100,
    item_vectors=None,
    n_bootstrap: int = 1000,
    seed: int = DEFAULT_SEED,
    segments: bool = True,
) -> EvaluationResult:
    """Evaluate fitted recommenders on one split with one protocol.

    Args:
        recommenders (dict or list): ``{name: Recommender}``, or a list named
            by each model's ``name``. Models must be fitted on ``split.train``
            with a catalog that contains every candidate item.
        split (Split): The split; :meth:`Split.check` runs before anything else.
        ks (sequence of int): Cut-offs K.
        metrics (sequence of str): Ranking metrics from
            :data:`~vidrec_lab.evaluation.metrics.RANKING_METRICS`.
        stage (str): ``"test"`` (history = train + valid) or ``"valid"`` (history = train).
        mode (str): ``"full"`` ranking of all candidates or ``"sampled"``
            ranking among ``n_negatives`` random unseen candidates.
        n_negatives (int): Negatives per target in sampled mode.
        item_vectors (dict or tuple, optional): Item vectors for intra-list
            diversity; it is skipped without them.
        n_bootstrap (int): Resamples of users for the confidence intervals
            (0 skips them, leaving NaN).
        seed (int): Seed of the negatives and of the bootstrap.
        segments (bool): Also report metrics per user-activity tertile and
            per popularity bucket of the target item.

    Returns:
        EvaluationResult: Tables of means with intervals, per-user values,
        beyond-accuracy metrics (full mode only, since they describe top-K
        lists), segments, the split fingerprint and settings.

    Raises:
        LeakageError: when the split leaks held-out pairs into training.
        ValueError: on an unknown option value.
        DataError: when there is nothing to evaluate or a model lacks candidate items.

    Note:
        A model with ``scores_cold_items = False`` still runs on a cold-start
        split, although its scores of cold items carry no information. The
        ``scores_cold_items`` column and a logged warning make that visible.
    """
    models = _named_models(recommenders)
    ks = _check_ks(ks)
    metrics = check_metric_names(metrics)
    _check_option("stage", stage, STAGES)
    _check_option("mode", mode, MODES)
    if mode == "sampled" and (isinstance(n_negatives, bool) or not isinstance(n_negatives, (int, np.integer)) or n_negatives < 1):
        raise ValueError(f"n_negatives must be a positive integer; got {n_negatives!r}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative integer; got {n_bootstrap!r}")
    if not isinstance(split, Split):
        raise TypeError(f"split must be a vidrec_lab.splits.Split; got {type(split).__name__}")

    split.check()
    history = split.history(stage)
    candidates = [str(item) for item in split.candidate_items]
    targets = _targets(split, stage, candidates)
    users = pd.Index(pd.unique(targets[COL_USER]), name=COL_USER)
    logger.info(
        "evaluating %d models on %d %s users, %d targets, %d candidate items (%s ranking)",
        len(models), len(users), stage, len(targets), len(candidates), mode,
    )

    negatives = None
    unit_user = None
    if mode == "sampled":
        logger.warning(
            "sampled evaluation: each target is ranked among %d random unseen items instead of all %d candidates; "
            "this inflates every metric and can change the order of models, so report it as sampled",
            n_negatives, len(candidates),
        )
        negatives = _sample_negatives(targets, history, users, candidates, n_negatives, seed)
        unit_ids = targets[COL_USER] + "\x1f" + targets[COL_ITEM]
        unit_user = pd.Series(targets[COL_USER].to_numpy(), index=unit_ids.to_numpy())
        relevant = pd.DataFrame({COL_USER: unit_ids.to_numpy(), COL_ITEM: targets[COL_ITEM].to_numpy()})
    else:
        relevant = targets
    user_segment = _activity_tertiles(history, users) if segments else None
    item_segment = _popularity_buckets(history, candidates) if segments else None
    probabilities = item_probability(history, candidates)

    summaries, per_user, beyond, segment_frames, timings, cold_flags = [], [], [], [], {}, {}
    for name, model in tqdm(models.items(), desc="evaluate", unit="model"):
        started = time.perf_counter()
        _check_catalog(name, model, candidates)
        cold_flags[name] = bool(getattr(model, "scores_cold_items", False))
        if split.cold_items and not cold_flags[name]:
            logger.warning(
                "%s cannot score cold items (scores_cold_items=False); it still runs, but its ranking of the %d cold candidates carries no information",
                name, len(candidates),
            )

        if mode == "full":
            ranked = model.recommend(list(users), k=max(ks), exclude_seen=True, history=history, candidates=candidates)
        else:
            ranks = _sampled_ranks(name, model, negatives, users, history, candidates)
            ranked = pd.DataFrame({COL_USER: relevant[COL_USER].to_numpy(), COL_ITEM: relevant[COL_ITEM].to_numpy(), COL_RANK: ranks})
        wide = _per_user_values(ranked, relevant, unit_user, ks, metrics).reindex(users)
        summaries.append(_summary_rows(wide, n_bootstrap, seed).assign(model=name))
        long = wide.stack(["metric", "k"], future_stack=True).rename("value").reset_index()
        per_user.append(long.assign(model=name))
        if mode == "full":
            beyond += [dict(row, model=name) for row in _beyond_rows(ranked, ks, candidates, history, probabilities, item_vectors)]
        if segments:
            frames = _segment_frames(wide, ranked, relevant, unit_user, user_segment, item_segment, ks, metrics, n_bootstrap, seed)
            segment_frames += [frame.assign(model=name) for frame in frames]

        timings[name] = time.perf_counter() - started
        logger.info("evaluated %s in %.2f s", name, timings[name])
    if mode == "sampled":
        # NOTE: beyond-accuracy metrics describe top-K lists, which sampled ranking does not build.
        logger.info("sampled mode: beyond-accuracy metrics are skipped (they need full top-K lists)")

    table = pd.concat(summaries, ignore_index=True).assign(mode=mode, stage=stage)
    table["scores_cold_items"] = table["model"].map(cold_flags)
    per_user_table = pd.concat(per_user, ignore_index=True)[["model", COL_USER, "metric", "k", "value"]]
    per_user_table["k"] = per_user_table["k"].astype(int)
    beyond_table = pd.DataFrame(beyond, columns=["model", "metric", "k", "value", "n_users"]).assign(mode=mode, stage=stage)
    segment_columns = ["model", "segment_kind", "segment", "metric", "k", "value", "ci_low", "ci_high", "n_users"]
    segment_table = pd.concat(segment_frames, ignore_index=True)[segment_columns] if segment_frames else pd.DataFrame(columns=segment_columns)

    params = {
        "ks": ks,
        "metrics": list(metrics),
        "stage": stage,
        "mode": mode,
        "n_negatives": int(n_negatives) if mode == "sampled" else None,
        "n_bootstrap": int(n_bootstrap),
        "seed": int(seed),
        "segments": bool(segments),
        "split_kind": split.kind,
        "split_params": dict(split.params),
        "n_candidates": len(candidates),
        "n_users": len(users),
        "n_targets": len(targets),
        "models": list(models),
    }
    return EvaluationResult(
        table=table[TABLE_COLUMNS],
        per_user=per_user_table,
        beyond=beyond_table[["model", "metric", "k", "value", "mode", "stage", "n_users"]],
        segments=segment_table,
        split_fingerprint=split.fingerprint(),
        params=params,
        timings=timings,
    )
