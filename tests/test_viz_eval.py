"""Tests for the tables and figures of notebooks 05 and 06 (vidrec_lab.viz_eval)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from vidrec_lab import viz_eval as ve  # noqa: E402
from vidrec_lab.evaluation.abtest import ABTestResult, HeldOutRelevance  # noqa: E402
from vidrec_lab.evaluation.protocol import EvaluationResult, IncomparableResultsError  # noqa: E402
from vidrec_lab.tables import DataError  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _table(rows):
    """Build an EvaluationResult-style table from (model, metric, k, value, ci_low, ci_high) tuples."""
    return pd.DataFrame(rows, columns=["model", "metric", "k", "value", "ci_low", "ci_high"])


TABLE = _table(
    [
        ("EASE", "recall", 10, 0.2, 0.15, 0.25),
        ("EASE", "ndcg", 10, 0.1, 0.08, 0.12),
        ("EASE", "recall", 20, 0.3, 0.25, 0.35),
        ("TwoTower", "recall", 10, 0.25, 0.2, 0.3),
        ("TwoTower", "ndcg", 10, 0.125, 0.1, 0.15),
        ("TwoTower", "recall", 20, 0.4, 0.35, 0.45),
    ]
)


# ---------------------------------------------------------------------------- metric tables


def test_select_cutoffs_keeps_model_and_cutoff_order():
    rows = ve.select_cutoffs(TABLE, [("ndcg", 10), ("recall", 20)])
    assert rows["model"].tolist() == ["EASE", "EASE", "TwoTower", "TwoTower"]
    assert list(zip(rows["metric"], rows["k"])) == [("ndcg", 10), ("recall", 20)] * 2
    assert rows["value"].tolist() == [0.1, 0.3, 0.125, 0.4]


def test_select_cutoffs_missing_pair_names_it():
    with pytest.raises(DataError, match=r"no rows for \[\('mrr', 10\)\]; available"):
        ve.select_cutoffs(TABLE, [("mrr", 10)])


def test_select_cutoffs_missing_column():
    with pytest.raises(DataError, match="ci_high"):
        ve.select_cutoffs(TABLE.drop(columns="ci_high"), [("ndcg", 10)])


def test_format_ci_table_writes_intervals():
    table = TABLE.copy()
    table.loc[(table["model"] == "EASE") & (table["metric"] == "ndcg"), ["ci_low", "ci_high"]] = np.nan
    shown = ve.format_ci_table(table, [("ndcg", 10), ("recall", 10)], digits=3)
    assert shown.columns.tolist() == ["NDCG@10", "Recall@10"]
    assert shown.index.tolist() == ["EASE", "TwoTower"]
    assert shown.loc["EASE", "NDCG@10"] == "0.100"
    assert shown.loc["TwoTower", "NDCG@10"] == "0.125 [0.100, 0.150]"
    assert shown.loc["EASE", "Recall@10"] == "0.200 [0.150, 0.250]"


def test_format_ci_table_defaults_to_every_cutoff():
    shown = ve.format_ci_table(TABLE, digits=2)
    assert shown.columns.tolist() == ["Recall@10", "NDCG@10", "Recall@20"]


# ---------------------------------------------------------------------------- one user


ITEMS = pd.DataFrame({"item_id": ["1", "2", "3", "4", "5"], "title": ["面条挑战", "Toy Story", "我的健身房日常", "Heat", "Fargo"]})


def test_history_and_recommendations_side_by_side():
    history = pd.DataFrame(
        {
            "user_id": ["u", "u", "u", "u", "v"],
            "item_id": ["1", "2", "1", "3", "4"],
            "timestamp": [10, 20, 30, 30, 5],  # item 1 again at 30, tied with item 3 (table order wins)
        }
    )
    recs = pd.DataFrame({"user_id": ["u", "u", "v"], "item_id": ["5", "4", "1"], "score": [2.5, 1.5, 9.0], "rank": [2, 1, 1]})
    held_out = pd.DataFrame({"user_id": ["u", "v"], "item_id": ["5", "1"]})
    shown = ve.history_and_recommendations(history, recs, ITEMS, "u", n_last=5, held_out=held_out)
    assert shown.index.tolist() == [1, 2, 3]
    assert shown["watched (latest first)"].tolist() == ["我的健身房日常", "面条挑战", "Toy Story"]
    assert shown["recommended"].tolist() == ["Heat", "Fargo", ""]
    assert shown["score"].tolist() == [1.5, 2.5, ""]
    assert shown["held_out"].tolist() == [False, True, ""]


def test_history_and_recommendations_cuts_history():
    history = pd.DataFrame({"user_id": ["u"] * 4, "item_id": ["1", "2", "3", "4"], "timestamp": [1, 2, 3, 4]})
    recs = pd.DataFrame({"user_id": ["u"], "item_id": ["5"], "score": [1.0], "rank": [1]})
    shown = ve.history_and_recommendations(history, recs, ITEMS, "u", n_last=2)
    assert shown["watched (latest first)"].tolist() == ["Heat", "我的健身房日常"]
    assert "held_out" not in shown.columns


def test_history_and_recommendations_unknown_user():
    history = pd.DataFrame({"user_id": ["u"], "item_id": ["1"], "timestamp": [1]})
    recs = pd.DataFrame({"user_id": ["u"], "item_id": ["2"], "score": [1.0], "rank": [1]})
    with pytest.raises(DataError, match="user 'nobody' has no history row and no recommendation"):
        ve.history_and_recommendations(history, recs, ITEMS, "nobody")


def test_history_and_recommendations_needs_timestamps():
    history = pd.DataFrame({"user_id": ["u"], "item_id": ["1"]})
    recs = pd.DataFrame({"user_id": ["u"], "item_id": ["2"], "score": [1.0], "rank": [1]})
    with pytest.raises(DataError, match="timestamp"):
        ve.history_and_recommendations(history, recs, ITEMS, "u")


# ---------------------------------------------------------------------------- metric figures


def test_plot_metric_vs_k_lines():
    ax = ve.plot_metric_vs_k(TABLE, "recall")
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["EASE", "TwoTower"]
    assert lines[1].get_xdata().tolist() == [10.0, 20.0]
    assert lines[1].get_ydata().tolist() == [0.25, 0.4]
    assert len(ax.collections) == 2  # one confidence band each
    assert [t for t in ax.get_xticks()] == [10, 20]
    assert ax.get_ylabel() == "Recall@K"


def test_plot_metric_vs_k_unknown_metric():
    with pytest.raises(DataError, match="no rows for metric 'mrr'"):
        ve.plot_metric_vs_k(TABLE, "mrr")
    with pytest.raises(DataError, match=r"models \['BPR'\] have no 'recall' rows"):
        ve.plot_metric_vs_k(TABLE, "recall", models=["BPR"])


def test_plot_tradeoff_places_models():
    beyond = pd.DataFrame({"model": ["EASE", "TwoTower"], "metric": ["novelty"] * 2, "k": [10, 10], "value": [7.5, 9.0]})
    ax = ve.plot_tradeoff(TABLE, beyond, accuracy=("ndcg", 10), other=("novelty", 10))
    points = [line for line in ax.get_lines() if len(line.get_xdata()) == 1 and line.get_marker() == "o"]
    assert [(float(p.get_xdata()[0]), float(p.get_ydata()[0])) for p in points] == [(7.5, 0.1), (9.0, 0.125)]
    assert [t.get_text() for t in ax.texts] == ["EASE", "TwoTower"]
    assert ax.get_xlabel() == "Novelty@10"


def test_plot_tradeoff_missing_beyond_metric():
    beyond = pd.DataFrame({"model": ["EASE"], "metric": ["coverage"], "k": [10], "value": [0.3]})
    with pytest.raises(DataError, match=r"no coverage@10 for models \['TwoTower'\]"):
        ve.plot_tradeoff(TABLE, beyond, other=("coverage", 10))


def _segments():
    rows = []
    for model, shift in (("EASE", 0.0), ("TwoTower", 0.05)):
        for segment, value, n in (("low", 0.1, 30), ("mid", 0.2, 31), ("high", 0.3, 29)):
            rows.append((model, "user_activity", segment, "ndcg", 10, value + shift, value + shift - 0.01, value + shift + 0.01, n))
    return pd.DataFrame(rows, columns=["model", "segment_kind", "segment", "metric", "k", "value", "ci_low", "ci_high", "n_users"])


def test_plot_segments_draws_grouped_bars():
    ax = ve.plot_segments(_segments(), metric="ndcg", k=10, segment_kind="user_activity")
    heights = [round(p.get_height(), 6) for p in ax.patches]
    assert heights == [0.1, 0.2, 0.3, 0.15, 0.25, 0.35]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["low\n(n=30)", "mid\n(n=31)", "high\n(n=29)"]


def test_plot_segments_orders_popularity():
    rows = [("EASE", "item_popularity", segment, "ndcg", 10, value, value, value, 5) for segment, value in (("tail", 0.1), ("cold", 0.0), ("head", 0.3), ("mid", 0.2))]
    segments = pd.DataFrame(rows, columns=_segments().columns)
    ax = ve.plot_segments(segments, metric="ndcg", k=10, segment_kind="item_popularity")
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["head", "mid", "tail", "cold"]
    assert [round(p.get_height(), 6) for p in ax.patches] == [0.3, 0.2, 0.1, 0.0]


def test_plot_segments_without_legend():
    ax = ve.plot_segments(_segments(), metric="ndcg", k=10, segment_kind="user_activity", legend=False)
    assert ax.get_legend() is None
    assert [h.get_label() for h in ax.get_legend_handles_labels()[0]] == ["EASE", "TwoTower"]


def test_plot_segments_unknown_kind():
    with pytest.raises(DataError, match=r"no rows for \('item_popularity', 'ndcg', 10\)"):
        ve.plot_segments(_segments(), metric="ndcg", k=10, segment_kind="item_popularity")


# ---------------------------------------------------------------------------- sampled vs full


def _result(values: dict, *, mode: str, fingerprint: str = "abc", stage: str = "test") -> EvaluationResult:
    table = _table([(model, "ndcg", 10, value, value - 0.01, value + 0.01) for model, value in values.items()])
    empty = pd.DataFrame()
    return EvaluationResult(table, empty, empty, empty, split_fingerprint=fingerprint, params={"mode": mode, "stage": stage})


def test_sampled_vs_full_ranks_and_inflation():
    full = _result({"EASE": 0.04, "TwoTower": 0.05, "MostPopular": 0.02}, mode="full")
    sampled = _result({"EASE": 0.40, "TwoTower": 0.30, "MostPopular": 0.10}, mode="sampled")
    out = ve.sampled_vs_full(full, sampled, metric="ndcg", k=10)
    assert out.index.tolist() == ["EASE", "TwoTower", "MostPopular"]
    assert out["full_rank"].tolist() == [2, 1, 3]
    assert out["sampled_rank"].tolist() == [1, 2, 3]
    assert out["inflation"].round(6).tolist() == [10.0, 6.0, 5.0]


def test_sampled_vs_full_rejects_other_split():
    full = _result({"EASE": 0.04}, mode="full", fingerprint="one")
    sampled = _result({"EASE": 0.4}, mode="sampled", fingerprint="two")
    with pytest.raises(IncomparableResultsError, match="different splits"):
        ve.sampled_vs_full(full, sampled, metric="ndcg", k=10)


def test_sampled_vs_full_checks_modes():
    full = _result({"EASE": 0.04}, mode="full")
    with pytest.raises(ValueError, match="expected a full and a sampled result; got modes 'full' and 'full'"):
        ve.sampled_vs_full(full, full, metric="ndcg", k=10)


def test_plot_sampled_vs_full_slopes():
    comparison = pd.DataFrame({"full": [0.04, 0.05], "sampled": [0.4, 0.3]}, index=pd.Index(["EASE", "TwoTower"], name="model"))
    ax = ve.plot_sampled_vs_full(comparison, metric="ndcg", k=10, n_negatives=100, n_candidates=1682)
    assert [line.get_ydata().tolist() for line in ax.get_lines()] == [[0.04, 0.4], [0.05, 0.3]]
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["full ranking\n(all 1682 items)", "sampled, inflated\n(1 + 100 items)"]


# ---------------------------------------------------------------------------- A/B tests


def _ab_result(lift: float) -> ABTestResult:
    effects = pd.DataFrame(
        [{"metric": "ctr", "control": 0.1, "treatment": 0.1 * (1 + lift), "lift": lift, "ci_low": lift - 0.05, "ci_high": lift + 0.05, "p_value": 0.01, "method": "delta"}]
    )
    arms = pd.DataFrame({"arm": ["A", "B"], "users": [50, 48]})
    return ABTestResult(arms=arms, effects=effects, per_user=pd.DataFrame())


def test_lift_table_stacks_experiments():
    lifts = ve.lift_table({"first": _ab_result(0.2), "second": _ab_result(-0.1)})
    assert lifts["experiment"].tolist() == ["first", "second"]
    assert lifts["lift"].tolist() == [0.2, -0.1]
    assert lifts["users"].tolist() == [98, 98]


def test_lift_table_rejects_other_objects():
    with pytest.raises(TypeError, match=r"results\['x'\] is a dict; expected an ABTestResult"):
        ve.lift_table({"x": {"lift": 0.1}})


def test_plot_lifts_in_percent():
    lifts = ve.lift_table({"first": _ab_result(0.2), "second": _ab_result(-0.1)})
    ax = ve.plot_lifts(lifts)
    points = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert [round(float(p.get_xdata()[0]), 6) for p in points] == [20.0, -10.0]
    labels = {float(tick): label.get_text() for tick, label in zip(ax.get_yticks(), ax.get_yticklabels())}
    assert labels == {1.0: "first\nctr", 0.0: "second\nctr"}  # the first experiment is drawn at the top


def test_plot_lifts_marks_undefined_lift():
    undefined = _ab_result(0.2)
    undefined.effects.loc[:, ["lift", "ci_low", "ci_high"]] = np.nan
    ax = ve.plot_lifts(ve.lift_table({"no clicks": undefined, "fine": _ab_result(0.1)}))
    assert [t.get_text() for t in ax.texts] == ["undefined (no clicks in A)"]
    assert len([line for line in ax.get_lines() if line.get_marker() == "o"]) == 1


def test_expected_ctr_hand_computed():
    recs = pd.DataFrame({"user_id": ["u", "u", "u", "v"], "item_id": ["a", "b", "c", "a"], "rank": [1, 3, 7, 2]})
    relevance = HeldOutRelevance(pd.DataFrame({"user_id": ["u", "v"], "item_id": ["b", "a"]}), relevant_probability=0.5, base_rate=0.1)
    # Shown positions: u sees a, b (c is cut by k=2), v sees a. Examination is 1 / position.
    # u: 1/1 * 0.1 + 1/2 * 0.5 = 0.35; v: 1/1 * 0.5 = 0.5; mean over 3 impressions = 0.85 / 3.
    assert ve.expected_ctr(recs, relevance, k=2) == pytest.approx(0.85 / 3)


def test_expected_ctr_rejects_bad_k():
    recs = pd.DataFrame({"user_id": ["u"], "item_id": ["a"], "rank": [1]})
    relevance = HeldOutRelevance(pd.DataFrame({"user_id": ["u"], "item_id": ["a"]}))
    with pytest.raises(ValueError, match="k must be a positive integer; got 0"):
        ve.expected_ctr(recs, relevance, k=0)


def _lists(users, items_per_user):
    rows = [(u, item, rank) for u in users for rank, item in enumerate(items_per_user(u), start=1)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rank"])


def test_detection_rates_interleaving_more_sensitive():
    users = [f"u{i}" for i in range(60)]
    held_out = pd.DataFrame({"user_id": users, "item_id": [f"hit-{u}" for u in users]})
    relevance = HeldOutRelevance(held_out, relevant_probability=0.9, base_rate=0.1)
    control = _lists(users, lambda u: [f"miss-{u}-{r}" for r in range(3)])
    treatment = _lists(users, lambda u: [f"hit-{u}", f"miss-{u}-0", f"miss-{u}-1"])
    rates = ve.detection_rates(control, treatment, relevance, user_counts=[20, 60], n_repeats=5, k=3, seed=3)
    assert rates["n_users"].tolist() == [20, 20, 60, 60]
    assert rates["method"].tolist() == ["A/B test (CTR)", "interleaving"] * 2
    assert (rates["n_repeats"] == 5).all()
    ab = rates.loc[rates["method"] == "A/B test (CTR)", "detection_rate"].tolist()
    interleaved = rates.loc[rates["method"] == "interleaving", "detection_rate"].tolist()
    # B shows the held-out item first and A never shows it. Interleaving detects that with 20 users.
    # The A/B test splits them into two arms and detects it less often, though more often with 60.
    assert interleaved == [1.0, 1.0]
    assert ab[0] < ab[1] < 1.0


def test_detection_rates_identical_arms_rarely_detect():
    users = [f"u{i}" for i in range(40)]
    held_out = pd.DataFrame({"user_id": users, "item_id": [f"hit-{u}" for u in users]})
    relevance = HeldOutRelevance(held_out, relevant_probability=0.6, base_rate=0.05)
    lists = _lists(users, lambda u: [f"hit-{u}", f"miss-{u}-0", f"miss-{u}-1"])
    rates = ve.detection_rates(lists, lists.copy(), relevance, user_counts=[40], n_repeats=20, k=3, seed=5)
    for rate in rates["detection_rate"]:
        assert rate <= 0.2
    assert math.isfinite(rates["mean_p_value"].iloc[0])


def test_detection_rates_checks_user_counts():
    users = [f"u{i}" for i in range(30)]
    lists = _lists(users, lambda u: ["a", "b"])
    relevance = HeldOutRelevance(pd.DataFrame({"user_id": users, "item_id": ["a"] * 30}))
    with pytest.raises(ValueError, match=r"user_counts must be integers in \[20, 30\]"):
        ve.detection_rates(lists, lists, relevance, user_counts=[10])
    with pytest.raises(ValueError, match=r"user_counts must be integers in \[20, 30\]"):
        ve.detection_rates(lists, lists, relevance, user_counts=[31])
    with pytest.raises(ValueError, match="n_repeats must be a positive integer; got 0"):
        ve.detection_rates(lists, lists, relevance, user_counts=[20], n_repeats=0)


def test_user_counts_from_shares_clips_and_dedupes():
    assert ve.user_counts_from_shares(943, [0.05, 0.1, 0.5, 1.0]) == [47, 94, 472, 943]
    assert ve.user_counts_from_shares(60, [0.01, 0.1, 0.5, 1.0]) == [20, 30, 60]


def test_user_counts_from_shares_rejects_bad_input():
    with pytest.raises(ValueError, match=r"shares must be numbers in \(0, 1\]; got \[0.5, 1.5\]"):
        ve.user_counts_from_shares(100, [0.5, 1.5])
    with pytest.raises(ValueError, match="n_users must be an integer >= 20; got 10"):
        ve.user_counts_from_shares(10, [0.5])


def test_plot_detection_rates_lines():
    rates = pd.DataFrame(
        {"n_users": [20, 40, 20, 40], "method": ["A/B test (CTR)"] * 2 + ["interleaving"] * 2, "detection_rate": [0.1, 0.3, 0.4, 0.9]}
    )
    ax = ve.plot_detection_rates(rates, alpha=0.05)
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["A/B test (CTR)", "interleaving", "alpha = 0.05"]
    assert lines[1].get_ydata().tolist() == [0.4, 0.9]
