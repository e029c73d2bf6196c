"""Tables and figures for the recommendation and evaluation notebooks (05 and 06).

Tables:

* :func:`select_cutoffs` and :func:`format_ci_table` pick (metric, K) columns
  from an :class:`~vidrec_lab.evaluation.protocol.EvaluationResult` table and
  write each value with its confidence interval.
* :func:`history_and_recommendations` puts one user's latest items beside
  their recommendations, by title.
* :func:`sampled_vs_full` lines up a sampled-negatives evaluation with the
  full-ranking one of the same split, with ranks and inflation.
* :func:`lift_table` stacks the effects of several simulated A/B tests, and
  :func:`expected_ctr` gives the click-through rate a click model expects
  for a recommendation table (a baseline rate for sample-size planning).
* :func:`detection_rates` repeats A/B tests and team-draft interleaving on
  random user samples of several sizes (:func:`user_counts_from_shares`)
  and counts how often each detects the difference between two recommenders.

Figures: :func:`plot_metric_vs_k`, :func:`plot_tradeoff`,
:func:`plot_segments`, :func:`plot_sampled_vs_full`, :func:`plot_lifts` and
:func:`plot_detection_rates`. Each takes an ``Axes`` (or creates one with
:func:`vidrec_lab.viz.new_axes`) and returns it.
"""

from __future__ import annotations

import logging
from typing import Callable, Mapping, Sequence

import matplotlib.ticker
import numpy as np
import pandas as pd

from vidrec_lab.constants import COL_ITEM, COL_TIMESTAMP, COL_TITLE, COL_USER, DEFAULT_SEED
from vidrec_lab.recommend import COL_RANK, COL_SCORE
from vidrec_lab.tables import DataError, require_columns
from vidrec_lab.viz import METRIC_LABELS, PALETTE, new_axes

logger = logging.getLogger(__name__)

# Columns of EvaluationResult.table that the table helpers read.
_TABLE_COLUMNS = ["model", "metric", "k", "value", "ci_low", "ci_high"]

# Minimum users per experiment in detection_rates. An A/B test raises when an arm gets fewer than two
# users. With a fair coin that happens with probability 2 (n + 1) / 2**n, which is below 1e-4 from n = 20.
MIN_DETECTION_USERS = 20


def _label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


# ---------------------------------------------------------------------------- metric tables


def select_cutoffs(table: pd.DataFrame, cutoffs: Sequence[tuple[str, int]]) -> pd.DataFrame:
    """Return the rows of ``table`` for the given (metric, K) pairs, models in table order.

    Args:
        table (pandas.DataFrame): ``EvaluationResult.table`` (model, metric, k, value, ci_low, ci_high, ...).
        cutoffs (sequence of (str, int)): Pairs such as ``[("recall", 10), ("ndcg", 10)]``, in display order.

    Returns:
        pandas.DataFrame: One row per (model, cutoff), sorted by model order, then cutoff order.

    Raises:
        DataError: when a pair is not in the table (the message lists the pairs it has).
    """
    require_columns(table, _TABLE_COLUMNS, where="select_cutoffs(table)")
    cutoffs = [(str(metric), int(k)) for metric, k in cutoffs]
    if not cutoffs:
        raise ValueError("select_cutoffs: cutoffs must name at least one (metric, k) pair")
    available = set(zip(table["metric"].astype(str), table["k"].astype(int)))
    missing = [pair for pair in cutoffs if pair not in available]
    if missing:
        raise DataError(f"select_cutoffs: the table has no rows for {missing}; available (metric, k): {sorted(available)}")
    order = pd.DataFrame(cutoffs, columns=["metric", "k"]).assign(_cutoff=range(len(cutoffs)))
    models = pd.unique(table["model"])
    chosen = table.assign(k=table["k"].astype(int)).merge(order, on=["metric", "k"], how="inner")
    chosen["_model"] = pd.Categorical(chosen["model"], categories=models, ordered=True)
    chosen = chosen.sort_values(["_model", "_cutoff"], kind="mergesort")
    return chosen.drop(columns=["_model", "_cutoff"]).reset_index(drop=True)


def format_ci_table(table: pd.DataFrame, cutoffs: Sequence[tuple[str, int]] | None = None, *, digits: int = 4) -> pd.DataFrame:
    """Return a models x ``Metric@K`` table of strings ``value [ci_low, ci_high]``, for display.

    A row without an interval (NaN bounds, e.g. ``n_bootstrap=0``) shows the value alone.

    Args:
        table (pandas.DataFrame): ``EvaluationResult.table``.
        cutoffs (sequence of (str, int), optional): Columns to show, in order; default every pair in the table.
        digits (int): Decimals.

    Returns:
        pandas.DataFrame: Index ``model`` (table order), one column per cutoff (``NDCG@10``).
    """
    require_columns(table, _TABLE_COLUMNS, where="format_ci_table(table)")
    if cutoffs is None:
        cutoffs = list(dict.fromkeys(zip(table["metric"].astype(str), table["k"].astype(int))))
    rows = select_cutoffs(table, cutoffs)

    def cell(row) -> str:
        text = f"{row['value']:.{digits}f}"
        if np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"]):
            text += f" [{row['ci_low']:.{digits}f}, {row['ci_high']:.{digits}f}]"
        return text

    rows = rows.assign(
        column=[f"{_label(m)}@{k}" for m, k in zip(rows["metric"], rows["k"])],
        text=[cell(row) for _, row in rows.iterrows()],
    )
    wide = rows.pivot(index="model", columns="column", values="text")
    columns = [f"{_label(metric)}@{int(k)}" for metric, k in cutoffs]
    return wide.reindex(index=pd.unique(rows["model"]), columns=columns)


def history_and_recommendations(
    history: pd.DataFrame,
    recs: pd.DataFrame,
    items: pd.DataFrame,
    user: str,
    *,
    n_last: int = 10,
    held_out: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Return one user's latest items beside their recommendations, by title.

    History items are distinct items ordered by their latest interaction,
    newest first (ties keep the table order). Recommendations are in rank
    order.

    Args:
        history (pandas.DataFrame): Interactions (user, item, timestamp), e.g. ``split.history("test")``.
        recs (pandas.DataFrame): Recommendations (user, item, score, rank) from ``Recommender.recommend``.
        items (pandas.DataFrame): Item table with ``item_id`` and ``title``.
        user (str): The user to show.
        n_last (int): History items shown.
        held_out (pandas.DataFrame, optional): Held-out (user, item) pairs, e.g.
            ``split.test``; adds a ``held_out`` column marking recommended items in it.

    Returns:
        pandas.DataFrame: Index ``position`` (1, 2, ...) and columns
        ``watched (latest first)``, ``recommended``, ``score`` (and ``held_out``);
        the shorter side is padded with empty cells.

    Raises:
        DataError: when the user has neither history nor recommendations.
    """
    require_columns(history, [COL_USER, COL_ITEM, COL_TIMESTAMP], where="history_and_recommendations(history)")
    require_columns(recs, [COL_USER, COL_ITEM, COL_SCORE, COL_RANK], where="history_and_recommendations(recs)")
    require_columns(items, [COL_ITEM, COL_TITLE], where="history_and_recommendations(items)")
    if isinstance(n_last, bool) or not isinstance(n_last, (int, np.integer)) or n_last < 1:
        raise ValueError(f"n_last must be a positive integer; got {n_last!r}")
    user = str(user)
    titles = pd.Series(items[COL_TITLE].to_numpy(), index=items[COL_ITEM].astype(str).to_numpy())

    own = history.loc[history[COL_USER].astype(str) == user, [COL_ITEM, COL_TIMESTAMP]]
    own = own.assign(**{COL_ITEM: own[COL_ITEM].astype(str)}).reset_index(drop=True)
    latest = own.sort_values(COL_TIMESTAMP, kind="mergesort").drop_duplicates(COL_ITEM, keep="last")
    watched = latest[COL_ITEM].iloc[::-1].head(n_last).tolist()

    listed = recs.loc[recs[COL_USER].astype(str) == user].sort_values(COL_RANK, kind="mergesort")
    if not watched and listed.empty:
        raise DataError(f"history_and_recommendations: user {user!r} has no history row and no recommendation")
    recommended = listed[COL_ITEM].astype(str).tolist()

    n_rows = max(len(watched), len(recommended))
    out = pd.DataFrame(index=pd.RangeIndex(1, n_rows + 1, name="position"))
    out["watched (latest first)"] = pd.Series([titles.get(i, i) for i in watched], index=range(1, len(watched) + 1), dtype=object)
    out["recommended"] = pd.Series([titles.get(i, i) for i in recommended], index=range(1, len(recommended) + 1), dtype=object)
    out["score"] = pd.Series(listed[COL_SCORE].to_numpy(dtype=np.float64), index=range(1, len(recommended) + 1))
    if held_out is not None:
        require_columns(held_out, [COL_USER, COL_ITEM], where="history_and_recommendations(held_out)")
        targets = set(held_out.loc[held_out[COL_USER].astype(str) == user, COL_ITEM].astype(str))
        out["held_out"] = pd.Series([item in targets for item in recommended], index=range(1, len(recommended) + 1), dtype=object)
    return out.astype(object).where(out.notna(), "")


# ---------------------------------------------------------------------------- metric figures


def plot_metric_vs_k(table: pd.DataFrame, metric: str, *, models: Sequence[str] | None = None, legend: bool = True, ax=None):
    """Plot ``metric@K`` against K for each model, with its confidence band; return the Axes.

    Args:
        table (pandas.DataFrame): ``EvaluationResult.table`` with several K for ``metric``.
        metric (str): Metric name, e.g. ``"recall"``.
        models (sequence of str, optional): Models to draw, in legend order; default all, table order.
        legend (bool): Draw a legend (turn off when several panels share one figure legend).
        ax (matplotlib.axes.Axes, optional): Where to draw; default a new figure.
    """
    require_columns(table, _TABLE_COLUMNS, where="plot_metric_vs_k(table)")
    rows = table.loc[table["metric"] == metric]
    if rows.empty:
        raise DataError(f"plot_metric_vs_k: the table has no rows for metric {metric!r}; it contains {sorted(set(table['metric']))}")
    models = list(pd.unique(rows["model"])) if models is None else list(models)
    unknown = [m for m in models if m not in set(rows["model"])]
    if unknown:
        raise DataError(f"plot_metric_vs_k: models {unknown} have no {metric!r} rows; the table contains {list(pd.unique(rows['model']))}")
    if ax is None:
        _, ax = new_axes()
    for i, model in enumerate(models):
        part = rows.loc[rows["model"] == model].sort_values("k")
        ks = part["k"].to_numpy(dtype=np.float64)
        ax.plot(ks, part["value"], marker="o", markersize=3, color=_color(i), label=model)
        low, high = part["ci_low"].to_numpy(dtype=np.float64), part["ci_high"].to_numpy(dtype=np.float64)
        if np.isfinite(low).all() and np.isfinite(high).all():
            ax.fill_between(ks, low, high, color=_color(i), alpha=0.15, linewidth=0)
    ticks = sorted(set(rows["k"].astype(int)))
    ax.set_xscale("log")
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("K (list length)")
    ax.set_ylabel(f"{_label(metric)}@K")
    if legend:
        ax.legend(frameon=False)
    return ax


def plot_tradeoff(
    table: pd.DataFrame,
    beyond: pd.DataFrame,
    *,
    accuracy: tuple[str, int] = ("ndcg", 10),
    other: tuple[str, int] = ("novelty", 10),
    ax=None,
):
    """Scatter one accuracy metric (with its interval) against one beyond-accuracy metric, one labelled point per model.

    Args:
        table (pandas.DataFrame): ``EvaluationResult.table``.
        beyond (pandas.DataFrame): ``EvaluationResult.beyond`` (model, metric, k, value).
        accuracy (tuple): (metric, K) on the y axis.
        other (tuple): (metric, K) of ``beyond`` on the x axis, e.g. ``("coverage", 10)``.
        ax (matplotlib.axes.Axes, optional): Where to draw; default a new figure.
    """
    require_columns(beyond, ["model", "metric", "k", "value"], where="plot_tradeoff(beyond)")
    y = select_cutoffs(table, [accuracy])
    metric, k = other
    x = beyond.loc[(beyond["metric"] == metric) & (beyond["k"].astype(int) == int(k)), ["model", "value"]]
    joined = y.merge(x.rename(columns={"value": "other"}), on="model", how="left")
    if joined["other"].isna().any():
        missing = joined.loc[joined["other"].isna(), "model"].tolist()
        raise DataError(f"plot_tradeoff: beyond has no {metric}@{k} for models {missing}")
    if ax is None:
        _, ax = new_axes()
    for i, row in enumerate(joined.itertuples(index=False)):
        yerr = None
        if np.isfinite(row.ci_low) and np.isfinite(row.ci_high):
            yerr = [[row.value - row.ci_low], [row.ci_high - row.value]]
        ax.errorbar(row.other, row.value, yerr=yerr, fmt="o", color=_color(i), capsize=2, label=row.model)
        # Labels alternate above and below their points, so two nearby models stay readable.
        ax.annotate(row.model, (row.other, row.value), xytext=(4, 3 if i % 2 == 0 else -9), textcoords="offset points", fontsize=6, color=_color(i))
    ax.set_xlabel(f"{_label(metric)}@{k}")
    ax.set_ylabel(f"{_label(accuracy[0])}@{accuracy[1]} (95% CI)")
    return ax


def plot_segments(segments: pd.DataFrame, *, metric: str, k: int, segment_kind: str, legend: bool = True, ax=None):
    """Draw grouped bars of ``metric@k`` per segment and model, with intervals; return the Axes.

    Tick labels give each segment's number of users (of the first model,
    since all models are scored on the same users).

    Args:
        segments (pandas.DataFrame): ``EvaluationResult.segments``.
        metric (str): Metric name.
        k (int): Cut-off.
        segment_kind (str): ``"user_activity"`` or ``"item_popularity"``.
        legend (bool): Draw a legend (turn off when several panels share one figure legend).
        ax (matplotlib.axes.Axes, optional): Where to draw; default a new figure.
    """
    require_columns(
        segments, ["model", "segment_kind", "segment", "metric", "k", "value", "ci_low", "ci_high", "n_users"], where="plot_segments(segments)"
    )
    rows = segments.loc[(segments["segment_kind"] == segment_kind) & (segments["metric"] == metric) & (segments["k"].astype(int) == int(k))]
    if rows.empty:
        available = sorted(set(zip(segments["segment_kind"], segments["metric"], segments["k"].astype(int))))
        raise DataError(f"plot_segments: no rows for ({segment_kind!r}, {metric!r}, {k}); available (kind, metric, k): {available}")
    if ax is None:
        _, ax = new_axes()
    models = list(pd.unique(rows["model"]))
    names = _segment_order(rows["segment"], segment_kind)
    width = 0.8 / len(models)
    positions = np.arange(len(names), dtype=np.float64)
    for i, model in enumerate(models):
        part = rows.loc[rows["model"] == model].set_index("segment").reindex(names)
        values = part["value"].to_numpy(dtype=np.float64)
        errors = np.vstack([values - part["ci_low"].to_numpy(dtype=np.float64), part["ci_high"].to_numpy(dtype=np.float64) - values])
        errors = np.where(np.isfinite(errors), errors, 0.0)
        ax.bar(positions + (i - (len(models) - 1) / 2) * width, values, width, yerr=errors, color=_color(i), capsize=1.5, label=model)
    counts = rows.loc[rows["model"] == models[0]].set_index("segment")["n_users"].reindex(names)
    ax.set_xticks(positions)
    ax.set_xticklabels([f"{name}\n(n={int(n)})" if pd.notna(n) else str(name) for name, n in zip(names, counts)])
    ax.set_ylabel(f"{_label(metric)}@{k} (95% CI)")
    ax.set_title(segment_kind.replace("_", " "))
    if legend:
        ax.legend(frameon=False, fontsize=6)
    return ax


def _segment_order(segments: pd.Series, segment_kind: str) -> list[str]:
    """Return the segment names in the protocol's order (low to high activity, head to cold), others after."""
    from vidrec_lab.evaluation.protocol import ITEM_SEGMENTS, USER_SEGMENTS

    order = {"user_activity": USER_SEGMENTS, "item_popularity": ITEM_SEGMENTS}.get(segment_kind, ())
    found = list(pd.unique(segments))
    known = [name for name in order if name in found]
    return known + [name for name in found if name not in known]


# ---------------------------------------------------------------------------- sampled vs full


def sampled_vs_full(full, sampled, *, metric: str, k: int) -> pd.DataFrame:
    """Line up a sampled-negatives evaluation with the full-ranking one of the same split.

    Args:
        full (EvaluationResult): Made with ``mode="full"``.
        sampled (EvaluationResult): Made with ``mode="sampled"`` on the same split and stage.
        metric (str): Metric name.
        k (int): Cut-off.

    Returns:
        pandas.DataFrame: Index ``model`` (order of the full result) and
        columns ``full``, ``full_rank``, ``sampled``, ``sampled_rank`` (1 =
        best) and ``inflation`` (sampled / full).

    Raises:
        IncomparableResultsError: when the results come from different splits or stages.
        ValueError: when the modes are not full and sampled.
    """
    from vidrec_lab.evaluation.protocol import IncomparableResultsError

    if full.params.get("mode") != "full" or sampled.params.get("mode") != "sampled":
        raise ValueError(
            f"sampled_vs_full: expected a full and a sampled result; got modes {full.params.get('mode')!r} and {sampled.params.get('mode')!r}"
        )
    if full.split_fingerprint != sampled.split_fingerprint:
        raise IncomparableResultsError(
            f"sampled_vs_full: results were made on different splits (fingerprints {full.split_fingerprint} and "
            f"{sampled.split_fingerprint}); evaluate both on the same Split"
        )
    if full.params.get("stage") != sampled.params.get("stage"):
        raise IncomparableResultsError(
            f"sampled_vs_full: results differ in stage ({full.params.get('stage')!r} and {sampled.params.get('stage')!r})"
        )
    left = select_cutoffs(full.table, [(metric, k)]).set_index("model")["value"]
    right = select_cutoffs(sampled.table, [(metric, k)]).set_index("model")["value"]
    out = pd.DataFrame({"full": left, "sampled": right.reindex(left.index)})
    if out["sampled"].isna().any():
        raise DataError(f"sampled_vs_full: models {out.index[out['sampled'].isna()].tolist()} are missing from the sampled result")
    out["full_rank"] = out["full"].rank(ascending=False, method="min").astype(int)
    out["sampled_rank"] = out["sampled"].rank(ascending=False, method="min").astype(int)
    out["inflation"] = out["sampled"] / out["full"].where(out["full"] > 0)
    out.index.name = "model"
    return out[["full", "full_rank", "sampled", "sampled_rank", "inflation"]]


def plot_sampled_vs_full(comparison: pd.DataFrame, *, metric: str, k: int, n_negatives: int | None = None, n_candidates: int | None = None, ax=None):
    """Draw a slope chart from each model's full-ranking value to its sampled value; return the Axes.

    Lines that cross mean the sampled evaluation orders the models
    differently. The y axis is logarithmic because sampled values are often
    several times the full ones.

    Args:
        comparison (pandas.DataFrame): Output of :func:`sampled_vs_full`.
        metric (str): Metric name, for the axis label.
        k (int): Cut-off, for the axis label.
        n_negatives (int, optional): Negatives per target, for the tick label.
        n_candidates (int, optional): Candidates of the full ranking, for the tick label.
        ax (matplotlib.axes.Axes, optional): Where to draw; default a new figure.
    """
    require_columns(comparison, ["full", "sampled"], where="plot_sampled_vs_full(comparison)")
    if ax is None:
        _, ax = new_axes()
    for i, (model, row) in enumerate(comparison.iterrows()):
        ax.plot([0, 1], [row["full"], row["sampled"]], marker="o", markersize=3, color=_color(i))
        ax.annotate(str(model), (1, row["sampled"]), xytext=(4, 0), textcoords="offset points", va="center", fontsize=6, color=_color(i))
    positive = comparison[["full", "sampled"]].to_numpy(dtype=np.float64)
    if (positive > 0).all():
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    full_label = "full ranking" + (f"\n(all {n_candidates} items)" if n_candidates else "")
    sampled_label = "sampled, inflated" + (f"\n(1 + {n_negatives} items)" if n_negatives else "")
    ax.set_xticks([0, 1])
    ax.set_xticklabels([full_label, sampled_label])
    ax.set_xlim(-0.3, 1.6)
    ax.set_ylabel(f"{_label(metric)}@{k}")
    return ax


# ---------------------------------------------------------------------------- A/B tests and interleaving


def lift_table(results: Mapping[str, object]) -> pd.DataFrame:
    """Stack the effects of several simulated A/B tests, one row per (experiment, metric).

    Args:
        results (dict of str to ABTestResult): Experiment name -> result of
            :func:`~vidrec_lab.evaluation.abtest.simulate_ab_test`.

    Returns:
        pandas.DataFrame: ``experiment, metric, control, treatment, lift, ci_low, ci_high, p_value, users``.
    """
    if not results:
        raise ValueError("lift_table: results is empty; pass {name: ABTestResult}")
    frames = []
    for name, result in results.items():
        effects = getattr(result, "effects", None)
        if not isinstance(effects, pd.DataFrame):
            raise TypeError(f"lift_table: results[{name!r}] is a {type(result).__name__}; expected an ABTestResult")
        require_columns(effects, ["metric", "control", "treatment", "lift", "ci_low", "ci_high", "p_value"], where=f"lift_table(results[{name!r}].effects)")
        users = int(result.arms["users"].sum()) if "users" in getattr(result, "arms", pd.DataFrame()).columns else np.nan
        frames.append(effects.assign(experiment=name, users=users))
    columns = ["experiment", "metric", "control", "treatment", "lift", "ci_low", "ci_high", "p_value", "users"]
    return pd.concat(frames, ignore_index=True)[columns]


def expected_ctr(recs: pd.DataFrame, relevance: Callable, *, k: int = 10, click_model=None) -> float:
    """Return the click-through rate the click model expects when each user sees the top ``k`` of ``recs``.

    The mean over shown impressions of P(examined at rank r) x attraction,
    with ranks renumbered 1..n per user. Unlike the CTR of one simulated
    test, it has no sampling noise, and it is above 0 whenever some shown
    item has a positive attraction.

    Args:
        recs (pandas.DataFrame): Recommendations (user, item, rank).
        relevance (callable): ``f(user_ids, item_ids) -> probabilities``.
        k (int): Items shown per user.
        click_model (ClickModel, optional): Default ``ClickModel()``.

    Returns:
        float: Expected clicks per impression.
    """
    from vidrec_lab.evaluation.abtest import ClickModel

    require_columns(recs, [COL_USER, COL_ITEM, COL_RANK], where="expected_ctr(recs)")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")
    click_model = click_model or ClickModel()
    shown = recs.sort_values([COL_USER, COL_RANK], kind="mergesort")
    position = shown.groupby(COL_USER, sort=False).cumcount().to_numpy() + 1
    shown, position = shown.loc[position <= k], position[position <= k]
    if shown.empty:
        raise DataError("expected_ctr: recs has no rows, so there is no impression to click")
    attraction = np.asarray(relevance(shown[COL_USER].astype(str).to_numpy(), shown[COL_ITEM].astype(str).to_numpy()), dtype=np.float64)
    return float(np.mean(click_model.examination(position) * attraction))


def plot_lifts(lifts: pd.DataFrame, *, ax=None):
    """Draw each relative lift (in %) with its interval as a horizontal error bar; return the Axes.

    A lift that is not finite (arm A had no clicks) is marked as undefined.

    Args:
        lifts (pandas.DataFrame): Output of :func:`lift_table`.
        ax (matplotlib.axes.Axes, optional): Where to draw; default a new figure.
    """
    require_columns(lifts, ["experiment", "metric", "lift", "ci_low", "ci_high"], where="plot_lifts(lifts)")
    if ax is None:
        _, ax = new_axes()
    positions = np.arange(len(lifts))[::-1]
    for i, (position, row) in enumerate(zip(positions, lifts.itertuples(index=False))):
        lift = 100 * row.lift
        if not np.isfinite(lift):
            # The lift is undefined when arm A had no clicks (a CTR of 0).
            ax.annotate("undefined (no clicks in A)", (0.0, position), xytext=(4, 0), textcoords="offset points", va="center", fontsize=6)
            continue
        ax.errorbar(lift, position, xerr=[[lift - 100 * row.ci_low], [100 * row.ci_high - lift]], fmt="o", color=_color(i), capsize=2)
    ax.axvline(0.0, color="0.4", linewidth=0.8)
    ax.set_yticks(positions)
    ax.set_yticklabels([f"{row.experiment}\n{row.metric}" for row in lifts.itertuples(index=False)])
    ax.set_xlabel("relative lift of B over A (%, 95% CI)")
    return ax


def user_counts_from_shares(n_users: int, shares: Sequence[float]) -> list[int]:
    """Return the distinct user counts ``round(share * n_users)``, raised to :data:`MIN_DETECTION_USERS`, in order.

    Args:
        n_users (int): Users available (at least :data:`MIN_DETECTION_USERS`).
        shares (sequence of float): Shares in (0, 1].

    Returns:
        list of int: Sorted counts for :func:`detection_rates`.
    """
    if isinstance(n_users, bool) or not isinstance(n_users, (int, np.integer)) or n_users < MIN_DETECTION_USERS:
        raise ValueError(f"n_users must be an integer >= {MIN_DETECTION_USERS}; got {n_users!r}")
    shares = list(shares)
    bad = [share for share in shares if not 0 < share <= 1]
    if not shares or bad:
        raise ValueError(f"shares must be numbers in (0, 1]; got {shares}")
    return sorted({max(MIN_DETECTION_USERS, int(round(share * n_users))) for share in shares})


def detection_rates(
    control: pd.DataFrame,
    treatment: pd.DataFrame,
    relevance: Callable,
    *,
    user_counts: Sequence[int],
    n_repeats: int = 100,
    k: int = 10,
    click_model=None,
    alpha: float = 0.05,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """Estimate how often an A/B test and team-draft interleaving detect a difference, per number of users.

    For each count ``n`` and repeat, ``n`` users are drawn without
    replacement from those with a list from both models. The same users then
    run one two-arm A/B test on CTR (half of them per arm, on average) and one
    interleaving experiment (all of them see the merged list). A method
    detects the difference when its two-sided p-value is below ``alpha``.
    Repeats draw from independent streams spawned from ``seed``.

    Args:
        control, treatment (pandas.DataFrame): Recommendations (user, item, rank) of models A and B.
        relevance (callable): ``f(user_ids, item_ids) -> probabilities``, e.g. ``HeldOutRelevance``.
        user_counts (sequence of int): Users per experiment, from :data:`MIN_DETECTION_USERS`
            to the number of users with lists from both models.
        n_repeats (int): Experiments per count and method.
        k (int): Items shown per user.
        click_model (ClickModel, optional): Default ``ClickModel()``.
        alpha (float): Significance level.
        seed (int): Seed of the user samples, assignments and clicks.

    Returns:
        pandas.DataFrame: ``n_users, method`` (``"A/B test (CTR)"`` or
        ``"interleaving"``), ``detection_rate``, ``n_repeats``, ``mean_p_value``.
    """
    from vidrec_lab.evaluation.abtest import ABTestSimulator, simulate_interleaving

    require_columns(control, [COL_USER, COL_ITEM, COL_RANK], where="detection_rates(control)")
    require_columns(treatment, [COL_USER, COL_ITEM, COL_RANK], where="detection_rates(treatment)")
    if isinstance(n_repeats, bool) or not isinstance(n_repeats, (int, np.integer)) or n_repeats < 1:
        raise ValueError(f"n_repeats must be a positive integer; got {n_repeats!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    users = np.intersect1d(control[COL_USER].astype(str).unique(), treatment[COL_USER].astype(str).unique())
    counts = [int(n) for n in user_counts]
    bad = [n for n in counts if not MIN_DETECTION_USERS <= n <= len(users)]
    if not counts or bad:
        raise ValueError(
            f"user_counts must be integers in [{MIN_DETECTION_USERS}, {len(users)}] (the upper bound is the number of users "
            f"with lists from both models); got {list(user_counts)}"
        )

    rows = []
    streams = np.random.SeedSequence(seed).spawn(len(counts))
    for n, stream in zip(counts, streams):
        p_values = {"A/B test (CTR)": [], "interleaving": []}
        for child in stream.spawn(n_repeats):
            rng = np.random.default_rng(child)
            sample = rng.choice(users, size=n, replace=False)
            run_seed = int(rng.integers(2**32))
            simulator = ABTestSimulator(control, treatment, relevance, users=sample, k=k, click_model=click_model)
            effects = simulator.run(seed=run_seed).effects
            p_values["A/B test (CTR)"].append(float(effects.loc[effects["metric"] == "ctr", "p_value"].iloc[0]))
            p_values["interleaving"].append(
                simulate_interleaving(control, treatment, relevance, users=sample, k=k, click_model=click_model, seed=run_seed).p_value
            )
        for method, values in p_values.items():
            values = np.asarray(values, dtype=np.float64)
            # A NaN p-value (no clicks in an arm) counts as not detected.
            rows.append(
                {
                    "n_users": n,
                    "method": method,
                    "detection_rate": float(np.mean(np.nan_to_num(values, nan=1.0) < alpha)),
                    "n_repeats": int(n_repeats),
                    "mean_p_value": float(np.nanmean(values)) if np.isfinite(values).any() else float("nan"),
                }
            )
        logger.info("detection rates for %d users: %s", n, {r["method"]: r["detection_rate"] for r in rows[-2:]})
    return pd.DataFrame(rows)


def plot_detection_rates(rates: pd.DataFrame, *, alpha: float | None = 0.05, ax=None):
    """Plot the detection rate against users per experiment, one line per method; return the Axes.

    Args:
        rates (pandas.DataFrame): Output of :func:`detection_rates`.
        alpha (float, optional): Draws the level as a dotted line (the rate expected with no difference).
        ax (matplotlib.axes.Axes, optional): Where to draw; default a new figure.
    """
    require_columns(rates, ["n_users", "method", "detection_rate"], where="plot_detection_rates(rates)")
    if ax is None:
        _, ax = new_axes()
    for i, method in enumerate(pd.unique(rates["method"])):
        part = rates.loc[rates["method"] == method].sort_values("n_users")
        ax.plot(part["n_users"], part["detection_rate"], marker="o", markersize=3, color=_color(i), label=method)
    if alpha is not None:
        ax.axhline(alpha, color="0.4", linestyle=":", linewidth=0.8, label=f"alpha = {alpha}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("users in the experiment")
    ax.set_ylabel("detection rate (p < alpha)")
    ax.legend(frameon=False)
    return ax
