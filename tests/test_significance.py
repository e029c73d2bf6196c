import numpy as np
import pandas as pd
import pytest

from vidrec_lab.evaluation.significance import (
    adjust_p_values,
    bootstrap_ci,
    bootstrap_means,
    compare_models,
    paired_difference_ci,
    paired_test,
)
from vidrec_lab.tables import DataError


def test_bootstrap_ci_contains_true_mean():
    values = np.random.default_rng(0).normal(5.0, 1.0, size=400)
    mean, low, high = bootstrap_ci(values, n_bootstrap=2000, seed=1)
    assert mean == pytest.approx(values.mean())
    assert low < 5.0 < high
    # The percentile interval of a mean of 400 draws with sd 1 is about +/- 1.96 / 20 wide.
    assert high - low == pytest.approx(2 * 1.96 / 20, rel=0.15)


def test_bootstrap_ci_coverage_near_nominal():
    rng = np.random.default_rng(3)
    covered = 0
    for repeat in range(200):
        sample = rng.exponential(1.0, size=60)  # skewed, true mean 1
        _, low, high = bootstrap_ci(sample, n_bootstrap=400, seed=repeat)
        covered += low < 1.0 < high
    assert 0.88 <= covered / 200 <= 0.99


def test_bootstrap_ci_is_seeded():
    values = np.random.default_rng(0).random(50)
    assert bootstrap_ci(values, seed=5) == bootstrap_ci(values, seed=5)
    assert bootstrap_ci(values, seed=5) != bootstrap_ci(values, seed=6)


def test_bootstrap_columns_share_resamples():
    rng = np.random.default_rng(2)
    matrix = rng.random((80, 3))
    mean, low, high = bootstrap_ci(matrix, n_bootstrap=300, seed=9)
    for column in range(3):
        single = bootstrap_ci(matrix[:, column], n_bootstrap=300, seed=9)
        assert single == pytest.approx((mean[column], low[column], high[column]))
    # Paired: the resampled means of two identical columns are identical.
    doubled = bootstrap_means(np.column_stack([matrix[:, 0], matrix[:, 0]]), n_bootstrap=50, seed=1)
    np.testing.assert_array_equal(doubled[:, 0], doubled[:, 1])


def test_bootstrap_rejects_nan_and_bad_count():
    with pytest.raises(ValueError, match="values contain NaN"):
        bootstrap_ci([1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="n_bootstrap must be a positive integer; got 0"):
        bootstrap_ci([1.0, 2.0], n_bootstrap=0)
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\); got 95"):
        bootstrap_ci([1.0, 2.0], confidence=95)


@pytest.mark.parametrize("method", ["wilcoxon", "t"])
def test_paired_test_identical_gives_p_one(method):
    values = pd.Series([0.1, 0.5, 0.0, 1.0], index=["u1", "u2", "u3", "u4"])
    result = paired_test(values, values.copy(), method=method)
    assert result.p_value == 1.0
    assert result.statistic == 0.0
    assert result.n_users == 4


@pytest.mark.parametrize("method", ["wilcoxon", "t"])
def test_paired_test_big_shift_small_p(method):
    rng = np.random.default_rng(4)
    base = pd.Series(rng.random(60), index=[f"u{i}" for i in range(60)])
    shifted = base + 0.3 + rng.normal(0, 0.05, size=60)
    result = paired_test(shifted, base, method=method)
    assert result.p_value < 1e-6
    assert result.mean_difference == pytest.approx(0.3, abs=0.03)


def test_paired_test_uses_shared_users():
    a = pd.Series([1.0, 2.0, 3.0, 4.0], index=["u1", "u2", "u3", "u4"])
    b = pd.Series([0.5, 2.5, 9.0], index=["u2", "u3", "u9"])
    result = paired_test(a, b, method="t")
    assert result.n_users == 2
    assert result.mean_difference == pytest.approx(((2.0 - 0.5) + (3.0 - 2.5)) / 2)
    with pytest.raises(ValueError, match=r"method must be one of \['wilcoxon', 't'\]; got 'sign'"):
        paired_test(a, b, method="sign")
    with pytest.raises(DataError, match="share 0 users"):
        paired_test(a, pd.Series([1.0], index=["x"]))


def test_paired_difference_ci_brackets_shift():
    rng = np.random.default_rng(8)
    base = pd.Series(rng.random(200), index=[f"u{i}" for i in range(200)])
    difference, low, high = paired_difference_ci(base + 0.1, base, seed=2)
    assert difference == pytest.approx(0.1)
    # A constant shift has no spread, so the interval collapses onto it.
    assert low == pytest.approx(0.1)
    assert high == pytest.approx(0.1)


def test_holm_hand_computed():
    p = [0.01, 0.04, 0.03, 0.005]
    # Sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> running max 0.06.
    np.testing.assert_allclose(adjust_p_values(p, "holm"), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(adjust_p_values(p, "bonferroni"), [0.04, 0.16, 0.12, 0.02])
    np.testing.assert_allclose(adjust_p_values([0.5, 0.9], "holm"), [1.0, 1.0])


def test_holm_leaves_nan_out():
    adjusted = adjust_p_values([0.01, np.nan, 0.02], "holm")
    assert adjusted[0] == pytest.approx(0.02)
    assert np.isnan(adjusted[1])
    assert adjusted[2] == pytest.approx(0.02)
    with pytest.raises(ValueError, match=r"correction must be one of \['holm', 'bonferroni'\]; got 'fdr'"):
        adjust_p_values([0.1], "fdr")


def _per_user_table():
    rng = np.random.default_rng(5)
    users = [f"u{i}" for i in range(80)]
    base = rng.random(80)
    rows = []
    for model, shift in (("Pop", 0.0), ("EASE", 0.2), ("KNN", 0.01)):
        values = np.clip(base + shift + rng.normal(0, 0.05, 80), 0, None)
        rows += [{"model": model, "user_id": u, "metric": "ndcg", "k": 10, "value": v} for u, v in zip(users, values)]
        rows += [{"model": model, "user_id": u, "metric": "recall", "k": 10, "value": v / 2} for u, v in zip(users, values)]
    return pd.DataFrame(rows)


def test_compare_models_against_baseline():
    table = compare_models(_per_user_table(), "ndcg", 10, baseline="Pop", correction="holm")
    assert list(table["model_a"]) == ["EASE", "KNN"]
    assert set(table["model_b"]) == {"Pop"}
    assert set(table["correction"]) == {"holm"}
    np.testing.assert_allclose(table["p_adjusted"], adjust_p_values(table["p_value"], "holm"))
    ease = table.loc[table["model_a"] == "EASE"].iloc[0]
    assert ease["difference"] == pytest.approx(ease["mean_a"] - ease["mean_b"])
    assert ease["ci_low"] > 0.15
    assert bool(ease["significant"])
    assert ease["n_users"] == 80


def test_compare_models_all_pairs_bonferroni():
    table = compare_models(_per_user_table(), "recall", 10, correction="bonferroni", method="t")
    assert list(zip(table["model_a"], table["model_b"])) == [("Pop", "EASE"), ("Pop", "KNN"), ("EASE", "KNN")]
    np.testing.assert_allclose(table["p_adjusted"], np.minimum(1, 3 * table["p_value"]))
    assert set(table["correction"]) == {"bonferroni"}
    assert set(table["method"]) == {"t"}


def test_compare_models_rejects_unknown_inputs():
    per_user = _per_user_table()
    with pytest.raises(ValueError, match=r"no per-user values for metric 'mrr' at k=10; available \(metric, k\): \[\('ndcg', 10\), \('recall', 10\)\]"):
        compare_models(per_user, "mrr", 10)
    with pytest.raises(ValueError, match=r"baseline must be one of the models \['Pop', 'EASE', 'KNN'\]; got 'BPR'"):
        compare_models(per_user, "ndcg", 10, baseline="BPR")
    with pytest.raises(DataError, match=r"compare_models\(per_user_table\): missing column\(s\) \['model'\]"):
        compare_models(per_user.drop(columns="model"), "ndcg", 10)
