"""Confidence intervals and paired significance tests on per-user metric values.

Offline metrics are means over users, so two models evaluated on the same
users form paired samples: each user contributes one value per model. The
functions here work on those per-user values.

* :func:`bootstrap_ci` gives percentile bootstrap intervals of a mean. The
  resampling is seeded and, for a matrix, uses the same resampled users for
  every column, so intervals of several models are paired.
* :func:`paired_test` runs a Wilcoxon signed-rank test or a paired t-test on
  the users both models have.
* :func:`compare_models` tests every pair of models (or every model against
  a baseline) and corrects the p-values for multiple comparisons.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from vidrec_lab.constants import COL_USER, DEFAULT_SEED
from vidrec_lab.tables import DataError, require_columns

logger = logging.getLogger(__name__)

TEST_METHODS = ("wilcoxon", "t")
CORRECTIONS = ("holm", "bonferroni")

# Bootstrap weights are drawn in blocks of at most this many (resample x user) cells, to bound memory.
_BOOTSTRAP_BLOCK_CELLS = 4_000_000


def _check_option(name: str, value, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}; got {value!r}")


def bootstrap_means(values, *, n_bootstrap: int = 1000, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Return the means of ``n_bootstrap`` resamples of the rows of ``values``.

    Each resample draws ``n`` rows with replacement from the ``n`` rows,
    which is the same as weighting row ``i`` by a multinomial count. The same
    counts apply to every column, so the columns stay paired.

    Args:
        values (array-like): Shape ``(n,)`` or ``(n, m)``, no NaN.
        n_bootstrap (int): Number of resamples.
        seed (int): Seed of ``numpy.random.default_rng``.

    Returns:
        numpy.ndarray: Shape ``(n_bootstrap,)`` or ``(n_bootstrap, m)``.
    """
    array = np.asarray(values, dtype=np.float64)
    one_column = array.ndim == 1
    matrix = array[:, None] if one_column else array
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError(f"bootstrap_means: values must have shape (n,) or (n, m) with n >= 1; got shape {array.shape}")
    if np.isnan(matrix).any():
        raise ValueError("bootstrap_means: values contain NaN; drop or fill them first so every resample has the same users")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be a positive integer; got {n_bootstrap!r}")

    n = matrix.shape[0]
    rng = np.random.default_rng(seed)
    probabilities = np.full(n, 1.0 / n)
    block = max(1, _BOOTSTRAP_BLOCK_CELLS // n)
    means = []
    for start in range(0, n_bootstrap, block):
        size = min(block, n_bootstrap - start)
        counts = rng.multinomial(n, probabilities, size=size)  # (size, n)
        means.append(counts @ matrix / n)  # (size, m)
    out = np.vstack(means)
    return out[:, 0] if one_column else out


def bootstrap_ci(values, *, n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = DEFAULT_SEED):
    """Compute the mean and a percentile bootstrap confidence interval of it.

    Args:
        values (array-like): Per-user values, shape ``(n,)``, or ``(n, m)``
            for ``m`` paired series (one interval per column).
        n_bootstrap (int): Number of resamples.
        confidence (float): Coverage of the interval, in (0, 1).
        seed (int): Seed of ``numpy.random.default_rng``.

    Returns:
        tuple: ``(mean, low, high)``, floats for 1-D input or arrays of
        length ``m`` for 2-D input.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}")
    array = np.asarray(values, dtype=np.float64)
    means = bootstrap_means(array, n_bootstrap=n_bootstrap, seed=seed)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail], axis=0)
    mean = array.mean(axis=0)
    if array.ndim == 1:
        return float(mean), float(low), float(high)
    return mean, low, high


def _aligned(per_user_a: pd.Series, per_user_b: pd.Series, *, function: str) -> pd.DataFrame:
    for name, series in (("per_user_a", per_user_a), ("per_user_b", per_user_b)):
        if not isinstance(series, pd.Series):
            raise DataError(f"{function}: {name} must be a pandas Series indexed by user id; got {type(series).__name__}")
        if series.index.has_duplicates:
            raise DataError(f"{function}: {name} has user {series.index[series.index.duplicated()][0]!r} more than once")
    both = pd.concat([per_user_a.rename("a"), per_user_b.rename("b")], axis=1, join="inner").dropna()
    if len(both) < 2:
        raise DataError(
            f"{function}: the two series share {len(both)} users with values; a paired comparison needs at least 2"
        )
    return both


def paired_difference_ci(
    per_user_a: pd.Series,
    per_user_b: pd.Series,
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float, float]:
    """Compute the mean of ``a - b`` over shared users and its paired percentile bootstrap interval.

    Returns:
        tuple: ``(mean difference, low, high)``.
    """
    both = _aligned(per_user_a, per_user_b, function="paired_difference_ci")
    return bootstrap_ci((both["a"] - both["b"]).to_numpy(), n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)


@dataclass(frozen=True)
class PairedTestResult:
    """Outcome of :func:`paired_test`."""

    method: str  # "wilcoxon" or "t"
    statistic: float
    p_value: float
    n_users: int  # users with a value in both series
    mean_difference: float  # mean of a - b over those users

    def to_dict(self) -> dict:
        return asdict(self)


def paired_test(per_user_a: pd.Series, per_user_b: pd.Series, method: str = "wilcoxon") -> PairedTestResult:
    """Test whether two models differ on the users both have values for.

    ``"wilcoxon"`` runs ``scipy.stats.wilcoxon`` (signed-rank, two-sided; its
    default ``zero_method="wilcox"`` drops users whose difference is 0).
    ``"t"`` runs ``scipy.stats.ttest_rel`` (paired t-test, two-sided).

    When every difference is 0 both tests are undefined (SciPy 1.17 returns
    NaN for the t-test). This function then returns statistic 0 and p = 1,
    because the data give no evidence of a difference.

    Args:
        per_user_a, per_user_b (pandas.Series): Per-user values indexed by user id.
        method (str): ``"wilcoxon"`` or ``"t"``.

    Returns:
        PairedTestResult: Statistic, two-sided p-value, users compared and mean difference.
    """
    _check_option("method", method, TEST_METHODS)
    both = _aligned(per_user_a, per_user_b, function="paired_test")
    difference = (both["a"] - both["b"]).to_numpy()
    n_users = len(both)
    if np.all(difference == 0):
        return PairedTestResult(method, 0.0, 1.0, n_users, 0.0)
    if method == "wilcoxon":
        outcome = stats.wilcoxon(both["a"].to_numpy(), both["b"].to_numpy())
    else:
        outcome = stats.ttest_rel(both["a"].to_numpy(), both["b"].to_numpy())
    return PairedTestResult(method, float(outcome.statistic), float(outcome.pvalue), n_users, float(difference.mean()))


def adjust_p_values(p_values: Sequence[float], correction: str = "holm") -> np.ndarray:
    """Correct p-values for multiple comparisons (family-wise error rate).

    * ``"bonferroni"``: ``min(1, m * p)``.
    * ``"holm"``: Holm's step-down method. Sort ascending, multiply the j-th
      smallest (1-based) by ``m - j + 1``, take the running maximum and cap
      at 1. The result is never larger than Bonferroni's.

    NaN p-values stay NaN and do not count in ``m``.

    Args:
        p_values (sequence of float): Raw p-values.
        correction (str): ``"holm"`` or ``"bonferroni"``.

    Returns:
        numpy.ndarray: Corrected p-values, in the input order.
    """
    _check_option("correction", correction, CORRECTIONS)
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    if m == 0:
        return out
    if correction == "bonferroni":
        out[valid] = np.minimum(1.0, p[valid] * m)
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def compare_models(
    per_user_table: pd.DataFrame,
    metric: str,
    k: int,
    baseline: str | None = None,
    correction: str = "holm",
    *,
    method: str = "wilcoxon",
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    alpha: float = 0.05,
    seed: int = DEFAULT_SEED,
    col_user: str = COL_USER,
) -> pd.DataFrame:
    """Test pairwise differences between models on one metric at one cut-off.

    Args:
        per_user_table (pandas.DataFrame): Columns ``model, user_id, metric, k,
            value``, as in :attr:`EvaluationResult.per_user`.
        metric (str): Metric to compare, e.g. ``"ndcg"``.
        k (int): Cut-off.
        baseline (str, optional): Compare every other model with this one.
            Default: every pair, in the order the models first appear.
        correction (str): ``"holm"`` or ``"bonferroni"``, applied over all rows.
        method (str): ``"wilcoxon"`` or ``"t"`` (see :func:`paired_test`).
        n_bootstrap (int): Resamples for the interval of the difference.
        confidence (float): Coverage of that interval.
        alpha (float): Level for the ``significant`` column (corrected p < alpha).
        seed (int): Seed of the bootstrap.
        col_user (str): User column name.

    Returns:
        pandas.DataFrame: One row per pair with ``model_a, model_b, metric, k,
        n_users, mean_a, mean_b, difference`` (a - b), ``ci_low, ci_high,
        method, p_value, p_adjusted, correction, significant``.
    """
    _check_option("correction", correction, CORRECTIONS)
    _check_option("method", method, TEST_METHODS)
    require_columns(per_user_table, ["model", col_user, "metric", "k", "value"], where="compare_models(per_user_table)")
    chosen = per_user_table.loc[(per_user_table["metric"] == metric) & (per_user_table["k"] == k)]
    if chosen.empty:
        available = sorted(set(zip(per_user_table["metric"], per_user_table["k"].astype(int))))
        raise ValueError(f"compare_models: no per-user values for metric {metric!r} at k={k}; available (metric, k): {available}")
    models = list(pd.unique(chosen["model"]))
    if baseline is not None and baseline not in models:
        raise ValueError(f"baseline must be one of the models {models}; got {baseline!r}")
    if len(models) < 2:
        raise ValueError(f"compare_models: needs at least two models; found {models}")
    wide = chosen.pivot_table(index=col_user, columns="model", values="value", aggfunc="first")

    if baseline is None:
        pairs = list(itertools.combinations(models, 2))
    else:
        pairs = [(model, baseline) for model in models if model != baseline]
    rows = []
    for model_a, model_b in pairs:
        a, b = wide[model_a], wide[model_b]
        test = paired_test(a, b, method=method)
        difference, low, high = paired_difference_ci(a, b, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
        shared = pd.concat([a, b], axis=1, join="inner").dropna()
        rows.append(
            {
                "model_a": model_a,
                "model_b": model_b,
                "metric": metric,
                "k": int(k),
                "n_users": test.n_users,
                "mean_a": float(shared.iloc[:, 0].mean()),
                "mean_b": float(shared.iloc[:, 1].mean()),
                "difference": difference,
                "ci_low": low,
                "ci_high": high,
                "method": method,
                "p_value": test.p_value,
            }
        )
    table = pd.DataFrame(rows)
    table["p_adjusted"] = adjust_p_values(table["p_value"].to_numpy(), correction)
    table["correction"] = correction
    table["significant"] = table["p_adjusted"] < alpha
    return table
