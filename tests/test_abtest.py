import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from vidrec_lab.datasets import make_synthetic, true_affinity
from vidrec_lab.evaluation.abtest import (
    ABTestSimulator,
    AffinityRelevance,
    ClickModel,
    HeldOutRelevance,
    plot_power_curve,
    power_curve,
    required_sample_size,
    simulate_ab_test,
    simulate_interleaving,
    team_draft_interleave,
)
from vidrec_lab.models.baselines import MostPopular
from vidrec_lab.recommend import Recommender
from vidrec_lab.tables import DataError


class TrueTaste(Recommender):
    """Ranks items by the synthetic generator's ground-truth affinity: the known better model."""

    name = "TrueTaste"
    scores_cold_items = True

    def __init__(self, dataset, **kwargs):
        super().__init__(**kwargs)
        self.dataset = dataset

    def _fit(self, train):
        pass

    def _score_matrix(self, user_ids, history):
        return true_affinity(self.dataset, user_ids, self.item_ids_)


@pytest.fixture(scope="module")
def platform():
    dataset = make_synthetic(n_users=300, n_items=120, n_topics=6, seed=4)
    users = dataset.users["user_id"].tolist()
    truth = TrueTaste(dataset).fit(dataset.interactions, items=dataset.items).recommend(users, k=10)
    popular = MostPopular().fit(dataset.interactions, items=dataset.items).recommend(users, k=10)
    return {"dataset": dataset, "truth": truth, "popular": popular, "relevance": AffinityRelevance.from_dataset(dataset)}


# --------------------------------------------------------------------------- sample size


def test_required_sample_size_hand_computed():
    # p1 = 0.10, p2 = 0.12, p = 0.11, z_a = 1.959964, z_b = 0.841621:
    # (1.959964 * sqrt(2 * 0.11 * 0.89) + 0.841621 * sqrt(0.09 + 0.1056))**2 / 0.02**2
    # = (0.867270 + 0.372222)**2 / 0.0004 = 3840.85 -> 3841 users per arm.
    assert required_sample_size(0.10, 0.20) == 3841
    assert required_sample_size(0.10, 0.02, relative=False) == 3841
    assert required_sample_size(0.10, 0.20, two_sided=False) < 3841
    assert required_sample_size(0.10, 0.20, power=0.9) > 3841


def test_required_sample_size_rejects_bad_input():
    with pytest.raises(ValueError, match=r"min_detectable_effect 0 gives a treatment rate of 0.1"):
        required_sample_size(0.1, 0)
    with pytest.raises(ValueError, match=r"baseline_rate must be in \(0, 1\); got 1.5"):
        required_sample_size(1.5, 0.1)


def test_power_curve_falls_with_effect_size():
    curve = power_curve(0.05, [0.05, 0.1, 0.2, 0.4])
    assert list(curve.columns) == ["mde", "treatment_rate", "n_per_arm", "n_total"]
    assert curve["n_per_arm"].is_monotonic_decreasing
    assert (curve["n_total"] == 2 * curve["n_per_arm"]).all()
    assert curve["treatment_rate"].tolist() == pytest.approx([0.0525, 0.055, 0.06, 0.07])
    ax = plot_power_curve(curve)
    assert ax.get_yscale() == "log"
    assert len(ax.lines[0].get_xdata()) == 4
    matplotlib.pyplot.close(ax.figure)


# --------------------------------------------------------------------------- click model


def test_click_model_examination():
    assert ClickModel(eta=0.0).examination(np.array([1, 5])).tolist() == [1.0, 1.0]
    np.testing.assert_allclose(ClickModel(eta=1.0).examination(np.array([1, 2, 4])), [1.0, 0.5, 0.25])
    np.testing.assert_allclose(ClickModel(eta=2.0).examination(np.array([3])), [1 / 9])
    with pytest.raises(ValueError, match="eta must be non-negative; got -1"):
        ClickModel(eta=-1)


def test_click_model_rates_and_watch_time():
    model = ClickModel(eta=1.0, watch_time_mean=60.0, watch_floor=0.2)
    n = 200_000
    ranks = np.repeat([1, 2], n)
    attraction = np.full(2 * n, 0.5)
    clicks, watch = model.simulate(ranks, attraction, np.random.default_rng(0))
    assert clicks[:n].mean() == pytest.approx(0.5, abs=0.005)
    assert clicks[n:].mean() == pytest.approx(0.25, abs=0.005)
    assert (watch[~clicks] == 0).all()
    # Mean watch of a click: 60 * (0.2 + 0.8 * 0.5) = 36 seconds.
    assert watch[clicks].mean() == pytest.approx(36.0, rel=0.02)


def test_held_out_relevance_probabilities():
    held_out = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["美食视频", "i2"]})
    relevance = HeldOutRelevance(held_out, relevant_probability=0.7, base_rate=0.01)
    values = relevance(np.array(["u1", "u1", "u2"]), np.array(["美食视频", "i2", "i2"]))
    np.testing.assert_allclose(values, [0.7, 0.01, 0.7])
    with pytest.raises(ValueError, match=r"base_rate \(0.5\) must not exceed relevant_probability \(0.2\)"):
        HeldOutRelevance(held_out, relevant_probability=0.2, base_rate=0.5)


def test_affinity_relevance_matches_ground_truth(platform):
    dataset = platform["dataset"]
    users = np.array(["u000", "u001", "u000"])
    items = np.array(["v000", "v005", "v119"])
    matrix = true_affinity(dataset, ["u000", "u001"], ["v000", "v005", "v119"])
    np.testing.assert_allclose(platform["relevance"](users, items), [matrix[0, 0], matrix[1, 1], matrix[0, 2]])
    scaled = AffinityRelevance(lambda u, i: 5 * true_affinity(dataset, u, i))
    with pytest.raises(DataError, match=r"has probability .*; expected a value in \[0, 1\]"):
        scaled(users, items)


# --------------------------------------------------------------------------- A/B test


def test_ab_test_detects_better_model(platform):
    result = simulate_ab_test(platform["popular"], platform["truth"], platform["relevance"], seed=1)
    ctr = result.effects.set_index("metric").loc["ctr"]
    assert ctr["lift"] > 0
    assert ctr["ci_low"] > 0
    assert ctr["method"] == "delta"
    assert result.significant("ctr")
    watch = result.effects.set_index("metric").loc["watch_time"]
    assert watch["ci_low"] > 0
    arms = result.arms.set_index("arm")
    assert arms["users"].sum() == 300
    assert arms.loc["A", "impressions"] == 10 * arms.loc["A", "users"]
    assert arms.loc["B", "ctr"] == pytest.approx(arms.loc["B", "clicks"] / arms.loc["B", "impressions"])


def test_ab_test_is_seeded(platform):
    first = simulate_ab_test(platform["popular"], platform["truth"], platform["relevance"], seed=3)
    second = simulate_ab_test(platform["popular"], platform["truth"], platform["relevance"], seed=3)
    pd.testing.assert_frame_equal(first.per_user, second.per_user)
    third = simulate_ab_test(platform["popular"], platform["truth"], platform["relevance"], seed=4)
    assert not first.per_user["arm"].equals(third.per_user["arm"])


def test_identical_arms_false_positive_rate(platform):
    simulator = ABTestSimulator(platform["truth"], platform["truth"], platform["relevance"])
    runs = simulator.repeat(200, seed=0)
    rate = runs.loc[runs["metric"] == "ctr", "significant"].mean()
    assert 0.01 <= rate <= 0.10
    lifts = runs.loc[runs["metric"] == "ctr", "lift"]
    assert abs(lifts.mean()) < 0.02


def test_ab_test_delta_interval_matches_hand_formula(platform):
    result = simulate_ab_test(platform["popular"], platform["truth"], platform["relevance"], seed=5)
    per_user = result.per_user
    parts = {arm: per_user.loc[per_user["arm"] == arm] for arm in ("A", "B")}
    # Every user sees 10 items, so each arm's CTR is the mean of per-user click counts / 10.
    ratio = {arm: part["clicks"].mean() / 10 for arm, part in parts.items()}
    variance = {arm: part["clicks"].var(ddof=1) / 100 / len(part) for arm, part in parts.items()}
    lift = ratio["B"] / ratio["A"] - 1
    se = ratio["B"] / ratio["A"] * math.sqrt(variance["B"] / ratio["B"] ** 2 + variance["A"] / ratio["A"] ** 2)
    ctr = result.effects.set_index("metric").loc["ctr"]
    assert ctr["lift"] == pytest.approx(lift)
    assert ctr["ci_low"] == pytest.approx(lift - stats.norm.ppf(0.975) * se)
    assert ctr["p_value"] == pytest.approx(2 * stats.norm.sf(abs(lift) / se))


def test_ab_test_rejects_bad_options(platform):
    with pytest.raises(ValueError, match=r"treatment_share must be in \(0, 1\); got 1.0"):
        simulate_ab_test(platform["popular"], platform["truth"], platform["relevance"], treatment_share=1.0)
    with pytest.raises(ValueError, match="users must be at least 4 distinct ids"):
        simulate_ab_test(platform["popular"], platform["truth"], platform["relevance"], users=["u000", "u001"])
    with pytest.raises(DataError, match=r"simulate_ab_test\(treatment\): missing column\(s\) \['rank'\]"):
        simulate_ab_test(platform["popular"], platform["truth"].drop(columns="rank"), platform["relevance"])


# --------------------------------------------------------------------------- interleaving


def test_team_draft_identical_lists():
    rng = np.random.default_rng(0)
    ranking = [f"i{n}" for n in range(10)]
    items, teams = team_draft_interleave(ranking, ranking, rng)
    assert items == ranking
    assert teams.count("A") == teams.count("B") == 5


def test_team_draft_keeps_each_team_order():
    list_a = ["a1", "s1", "a2", "a3", "s2"]
    list_b = ["s1", "b1", "s2", "b2", "b3"]
    for seed in range(20):
        items, teams = team_draft_interleave(list_a, list_b, np.random.default_rng(seed), k=6)
        assert len(items) == 6
        assert len(set(items)) == 6
        from_a = [item for item, team in zip(items, teams) if team == "A"]
        from_b = [item for item, team in zip(items, teams) if team == "B"]
        assert set(from_a) <= set(list_a)
        assert set(from_b) <= set(list_b)
        assert from_a == sorted(from_a, key=list_a.index)
        assert from_b == sorted(from_b, key=list_b.index)
        assert abs(len(from_a) - len(from_b)) <= 1
        # A team always takes its best item not yet shown, so the first item tops list A or list B.
        assert items[0] in ("a1", "s1")


def test_team_draft_exhausted_list():
    items, teams = team_draft_interleave(["x", "y", "z"], [], np.random.default_rng(0))
    assert items == ["x", "y", "z"]
    assert teams == ["A", "A", "A"]


def test_interleaving_identical_lists_split_evenly(platform):
    result = simulate_interleaving(platform["truth"], platform["truth"], platform["relevance"], seed=2)
    assert result.wins_a + result.wins_b + result.ties == 300
    assert 0.35 <= result.credit_b <= 0.65
    assert result.p_value > 0.05


def test_interleaving_better_list_wins(platform):
    result = simulate_interleaving(platform["popular"], platform["truth"], platform["relevance"], seed=2)
    assert result.winner == "B"
    assert result.wins_b > 5 * result.wins_a
    assert result.p_value < 1e-6
    per_user = result.per_user
    assert list(per_user.columns) == ["user_id", "clicks_a", "clicks_b", "winner"]
    assert (per_user["winner"] == "B").sum() == result.wins_b
