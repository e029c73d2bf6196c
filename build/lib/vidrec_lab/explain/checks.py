"""Sanity checks for explanations: SHAP additivity, LIME deletion test, stability across seeds.

An explanation can look plausible and still be wrong. Each check here tests
one property a faithful explanation must have and returns a small result
whose ``summary()`` is one row for the notebook's table:

* :func:`additivity_check`: SHAP values plus the base value equal the
  model's output (computed on the model's ordinary path);
* :func:`deletion_test`: removing the words LIME ranks highest lowers the
  score more than removing as many random words (the "deletion" or
  "faithfulness" test), counted per explanation;
* :func:`seed_stability`: LIME run with different seeds ranks the words
  alike (Spearman correlation of the word weights).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from vidrec_lab.constants import COL_ITEM, COL_USER
from vidrec_lab.explain.lime_text import TextExplanation, TextScorer, explain_recommendation_text, remove_tokens, text_tokens
from vidrec_lab.explain.shap_fusion import ShapAttribution
from vidrec_lab.tables import require_columns

logger = logging.getLogger(__name__)

# Relative errors divide by |output|, floored here so an output of exactly 0 does not divide by 0.
_MIN_DENOMINATOR = 1e-8


@dataclass
class AdditivityResult:
    """How far SHAP values plus base value are from the model output.

    Attributes:
        table (pandas.DataFrame): Per attribution: context, output,
            reconstructed (base + sum of values), abs_error, rel_error.
        tolerance (float): Largest relative error accepted.
    """

    table: pd.DataFrame
    tolerance: float

    @property
    def max_abs_error(self) -> float:
        return float(self.table["abs_error"].max())

    @property
    def max_rel_error(self) -> float:
        return float(self.table["rel_error"].max())

    @property
    def passed(self) -> bool:
        return self.max_rel_error <= self.tolerance

    def summary(self) -> dict:
        return {
            "check": "SHAP additivity",
            "n": len(self.table),
            "value": self.max_rel_error,
            "statistic": "max relative error",
            "threshold": self.tolerance,
            "passed": self.passed,
        }


def additivity_check(attributions: Sequence[ShapAttribution], *, tolerance: float = 1e-4) -> AdditivityResult:
    """Check that ``base_value + sum(values) == output`` for every attribution.

    The relative error is ``|base + sum(values) - output| / max(|output|, 1e-8)``.

    Args:
        attributions (sequence of ShapAttribution): Attributions to check.
        tolerance (float): Largest relative error accepted.

    Returns:
        AdditivityResult: Per-attribution errors and whether all pass.
    """
    if not attributions:
        raise ValueError("additivity_check: no attributions given")
    rows = []
    for attribution in attributions:
        reconstructed = float(attribution.base_value + np.sum(attribution.values))
        error = abs(reconstructed - attribution.output)
        rows.append(
            {
                **attribution.context,
                "output": attribution.output,
                "reconstructed": reconstructed,
                "abs_error": error,
                "rel_error": error / max(abs(attribution.output), _MIN_DENOMINATOR),
            }
        )
    return AdditivityResult(table=pd.DataFrame(rows), tolerance=float(tolerance))


@dataclass
class DeletionResult:
    """Outcome of the deletion test over several explanations.

    Attributes:
        table (pandas.DataFrame): Per explanation: context, words, k,
            output, drop_top (score lost when the top-k words are removed),
            drop_random (mean score lost over random k-word removals), passed.
        k (int): Words removed (fewer for texts with fewer than k + 1 words).
        n_random (int): Random removals per explanation.
        threshold (float): Pass rate the summary reports as passing.
    """

    table: pd.DataFrame
    k: int
    n_random: int
    threshold: float = 0.7

    @property
    def pass_rate(self) -> float:
        """Share of explanations where the top words mattered more than random ones (texts of 1 word excluded)."""
        tested = self.table["passed"].dropna()
        return float(tested.astype(bool).mean()) if len(tested) else float("nan")

    def summary(self) -> dict:
        return {
            "check": f"LIME deletion test (top {self.k} vs random words)",
            "n": int(self.table["passed"].notna().sum()),
            "value": self.pass_rate,
            "statistic": "pass rate",
            "threshold": self.threshold,
            "passed": bool(self.pass_rate >= self.threshold),
        }


def deletion_test(
    cases: Sequence[tuple[TextScorer, TextExplanation]],
    *,
    k: int = 3,
    n_random: int = 10,
    seed: int = 0,
) -> DeletionResult:
    """Compare the score drop from removing the top-k LIME words with that from k random words.

    For each (scoring function, explanation) pair the function scores, in
    one call, the full text, the text without its ``k`` highest-weighted
    words, and ``n_random`` texts without ``k`` words drawn uniformly. The
    explanation passes when the top-word drop is larger than the mean
    random drop. At most ``words - 1`` words are removed, so a text keeps
    one word; one-word texts are not tested (``passed`` is missing).

    Args:
        cases (sequence of tuples): ``(score_fn, explanation)``; ``score_fn``
            must be the function the explanation was computed for.
        k (int): Words removed.
        n_random (int): Random removals averaged per explanation.
        seed (int): Seed of the random removals.

    Returns:
        DeletionResult: Per-explanation drops and the pass rate.
    """
    if k < 1 or n_random < 1:
        raise ValueError(f"deletion_test: k and n_random must be positive; got k={k}, n_random={n_random}")
    rng = np.random.default_rng(seed)
    rows = []
    for score_fn, explanation in cases:
        tokens = text_tokens(explanation.text, explanation.tokenizer, explanation.keep_words)
        row = {**explanation.context, "words": len(tokens), "k": 0, "output": explanation.output}
        if len(tokens) < 2:
            rows.append({**row, "drop_top": np.nan, "drop_random": np.nan, "passed": None})
            continue
        n_removed = min(k, len(tokens) - 1)
        top = explanation.top_words(n_removed)
        random_sets = [rng.choice(tokens, size=n_removed, replace=False).tolist() for _ in range(n_random)]
        texts = [explanation.text, remove_tokens(explanation.text, top, explanation.tokenizer, explanation.keep_words)]
        texts += [remove_tokens(explanation.text, words, explanation.tokenizer, explanation.keep_words) for words in random_sets]
        scores = np.asarray(score_fn(texts), dtype=float).ravel()
        drop_top = scores[0] - scores[1]
        drop_random = float(np.mean(scores[0] - scores[2:]))
        rows.append({**row, "k": n_removed, "drop_top": drop_top, "drop_random": drop_random, "passed": bool(drop_top > drop_random)})
    table = pd.DataFrame(rows)
    return DeletionResult(table=table, k=int(k), n_random=int(n_random))


@dataclass
class StabilityResult:
    """Agreement of LIME word weights across seeds.

    Attributes:
        table (pandas.DataFrame): Per pair of seeds (and per explained case):
            context, seed_a, seed_b, words, spearman.
        threshold (float): Mean correlation the summary reports as passing;
            0.8 by default, a bar set here, not a published standard.
    """

    table: pd.DataFrame
    threshold: float = 0.8

    @property
    def mean_spearman(self) -> float:
        return float(self.table["spearman"].mean())

    @property
    def min_spearman(self) -> float:
        return float(self.table["spearman"].min())

    def summary(self) -> dict:
        return {
            "check": "LIME stability across seeds",
            "n": len(self.table),
            "value": self.mean_spearman,
            "statistic": "mean Spearman correlation",
            "threshold": self.threshold,
            "passed": bool(self.mean_spearman >= self.threshold),
        }


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def seed_stability(explanations: Sequence[TextExplanation]) -> StabilityResult:
    """Return the Spearman correlation of word weights between every pair of explanations of one text.

    Words missing from one explanation (when ``num_features`` cut them)
    are compared over the words both kept.

    Raises:
        ValueError: If fewer than two explanations are given or they explain different texts.
    """
    if len(explanations) < 2:
        raise ValueError(f"seed_stability: needs at least two explanations; got {len(explanations)}")
    texts = {e.text for e in explanations}
    if len(texts) != 1:
        raise ValueError(f"seed_stability: the explanations are of {len(texts)} different texts; expected one")
    rows = []
    for first, second in itertools.combinations(explanations, 2):
        a, b = first.weight_of(), second.weight_of()
        words = [w for w in a if w in b]
        rows.append(
            {
                **first.context,
                "seed_a": first.seed,
                "seed_b": second.seed,
                "words": len(words),
                "spearman": _spearman(np.array([a[w] for w in words]), np.array([b[w] for w in words])),
            }
        )
    return StabilityResult(table=pd.DataFrame(rows))


def stability_across_seeds(explain: Callable[[int], TextExplanation], seeds: Sequence[int] = (0, 1, 2)) -> StabilityResult:
    """Run ``explain(seed)`` for each seed and compare the word weights (see :func:`seed_stability`)."""
    return seed_stability([explain(int(seed)) for seed in seeds])


# ---------------------------------------------------------------------------- over recommendations


def deletion_test_recommendations(
    recommender,
    pairs: pd.DataFrame,
    *,
    k: int = 3,
    n_random: int = 10,
    num_samples: int = 1000,
    tokenizer="auto",
    seed: int = 0,
    history: pd.DataFrame | None = None,
    progress: bool = True,
) -> DeletionResult:
    """Explain each (user_id, item_id) pair with LIME, then run :func:`deletion_test` on all of them."""
    require_columns(pairs, [COL_USER, COL_ITEM], where="deletion_test_recommendations(pairs)")
    cases = []
    rows = list(zip(pairs[COL_USER].astype(str), pairs[COL_ITEM].astype(str)))
    for user, item in tqdm(rows, desc="LIME deletion test", unit="pair", disable=not progress):
        explanation = explain_recommendation_text(
            recommender, user, item, history=history, num_samples=num_samples, tokenizer=tokenizer, seed=seed
        )
        cases.append((recommender.text_scorer(user, item, history=history), explanation))
    return deletion_test(cases, k=k, n_random=n_random, seed=seed)


def stability_recommendations(
    recommender,
    pairs: pd.DataFrame,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    num_samples: int = 1000,
    tokenizer="auto",
    history: pd.DataFrame | None = None,
    progress: bool = True,
) -> StabilityResult:
    """Run :func:`stability_across_seeds` on LIME explanations of each (user_id, item_id) pair."""
    require_columns(pairs, [COL_USER, COL_ITEM], where="stability_recommendations(pairs)")
    tables = []
    rows = list(zip(pairs[COL_USER].astype(str), pairs[COL_ITEM].astype(str)))
    for user, item in tqdm(rows, desc="LIME stability", unit="pair", disable=not progress):
        result = stability_across_seeds(
            lambda seed: explain_recommendation_text(
                recommender, user, item, history=history, num_samples=num_samples, tokenizer=tokenizer, seed=seed
            ),
            seeds,
        )
        tables.append(result.table)
    return StabilityResult(table=pd.concat(tables, ignore_index=True))


def checks_table(*results) -> pd.DataFrame:
    """Return one row per check result (its ``summary()``), for the notebook."""
    return pd.DataFrame([result.summary() for result in results])
