"""Benchmark LIME and SHAP explanations of notebook 07's recommender on MovieLens 100k.

Builds the model notebook 07 explains with the fast-profile settings
(:func:`vidrec_lab.explain.scorer.build_fused_recommender`: all-MiniLM-L6-v2
text vectors and SVD behaviour vectors, a weighted-sum fusion trained on the
genres), on 2 PyTorch threads, then for the top recommendation of
``--pairs`` seeded test users:

* times one LIME explanation (``--samples`` perturbed texts, all scored by
  the real encoder in one call) per pair;
* times exact SHAP over the modalities per pair, after one warm-up call
  that compiles ``shap``'s numba kernels (timed on its own), and checks
  additivity;
* runs the deletion test on the top recommendation of ``--deletion-pairs``
  seeded test users.

Checks (exit status 1 when one fails):

* slowest LIME explanation under 20 s;
* SHAP additivity: max relative error at most 1e-4;
* deletion test pass rate at least 0.7.

The result goes to ``outputs/benchmarks/explain.json``.

Usage::

    .venv/bin/python benchmarks/bench_explain.py [--data PATH/ml-100k] [--pairs 5] [--deletion-pairs 30]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from _data import default_data_folder  # benchmarks/_data.py, beside this script
from vidrec_lab.config import get_profile, outputs_dir
from vidrec_lab.datasets import load_movielens_100k
from vidrec_lab.explain import (
    additivity_check,
    build_fused_recommender,
    deletion_test_recommendations,
    explain_modalities,
    explain_recommendation_text,
)
from vidrec_lab.features.text import TextEncoder
from vidrec_lab.io import atomic_write_json
from vidrec_lab.runner import hardware_info
from vidrec_lab.splits import leave_last_out

THREADS = 2
MAX_LIME_SECONDS = 20.0
MAX_REL_ERROR = 1e-4
MIN_PASS_RATE = 0.7


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="MovieLens-100k folder (default: the shared datasets folder)")
    parser.add_argument("--pairs", type=int, default=5, help="(user, top item) pairs timed")
    parser.add_argument("--deletion-pairs", type=int, default=30, help="pairs in the deletion test")
    parser.add_argument("--samples", type=int, default=1000, help="LIME samples per explanation")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    torch.set_num_threads(THREADS)
    folder = Path(args.data) if args.data else default_data_folder()
    profile = get_profile("fast")
    dataset = load_movielens_100k(folder, download=False)
    split = leave_last_out(dataset.interactions, items=dataset.items)
    history = split.history("test")

    started = time.perf_counter()
    encoder = TextEncoder(batch_size=profile.encoder_batch_size, max_length=profile.encoder_max_length)
    setup = build_fused_recommender(dataset.items, split.train, encoder=encoder, max_epochs=profile.max_epochs, seed=args.seed)
    build_s = time.perf_counter() - started
    model = setup.model
    encoder.load()  # loaded already unless every text vector came from the cache

    rng = np.random.default_rng(args.seed)
    test_users = split.test["user_id"].unique()
    timed_pairs = model.recommend(rng.choice(test_users, size=args.pairs, replace=False), k=1, history=history)
    lime_rows = []
    for user, item in zip(timed_pairs["user_id"], timed_pairs["item_id"]):
        tick = time.perf_counter()
        explanation = explain_recommendation_text(model, user, item, history=history, num_samples=args.samples, seed=args.seed)
        lime_rows.append(
            {"user_id": user, "item_id": item, "seconds": round(time.perf_counter() - tick, 3), "words": len(explanation.weights),
             "unique_texts": explanation.unique_texts, "r2": round(explanation.r2, 4)}
        )

    tick = time.perf_counter()
    explain_modalities(model, timed_pairs["user_id"].iloc[0], timed_pairs["item_id"].iloc[0], history=history)
    shap_first_s = time.perf_counter() - tick
    attributions, shap_seconds = [], []
    for user, item in zip(timed_pairs["user_id"], timed_pairs["item_id"]):
        tick = time.perf_counter()
        attributions.append(explain_modalities(model, user, item, history=history))
        shap_seconds.append(time.perf_counter() - tick)
    additivity = additivity_check(attributions, tolerance=MAX_REL_ERROR)

    check_pairs = model.recommend(rng.choice(test_users, size=args.deletion_pairs, replace=False), k=1, history=history)
    tick = time.perf_counter()
    deletion = deletion_test_recommendations(model, check_pairs, k=3, num_samples=args.samples, seed=args.seed, history=history, progress=False)
    deletion_s = time.perf_counter() - tick

    lime_seconds = [row["seconds"] for row in lime_rows]
    checks = {
        "lime_max_seconds_under_20": max(lime_seconds) < MAX_LIME_SECONDS,
        "shap_additivity_within_1e-4": additivity.passed,
        "deletion_pass_rate_at_least_0.7": deletion.pass_rate >= MIN_PASS_RATE,
    }
    result = {
        "settings": {"threads": THREADS, "lime_samples": args.samples, "pairs": args.pairs, "deletion_pairs": args.deletion_pairs,
                     "seed": args.seed, "data": str(folder), "model": "FusedContentRecommender (text + behavior, weighted-sum fusion trained on item users)"},
        "hardware": hardware_info(),
        "build_seconds": round(build_s, 2),
        "lime": {"max_seconds": max(lime_seconds), "median_seconds": float(np.median(lime_seconds)), "per_pair": lime_rows},
        "shap": {"first_call_seconds": round(shap_first_s, 3), "median_seconds": round(float(np.median(shap_seconds)), 4),
                 "additivity_max_rel_error": additivity.max_rel_error},
        "deletion": {"pass_rate": deletion.pass_rate, "pairs": int(deletion.table["passed"].notna().sum()), "seconds": round(deletion_s, 2)},
        "checks": checks,
        "passed": all(checks.values()),
    }
    path = atomic_write_json(outputs_dir("benchmarks") / "explain.json", result)
    sys.stdout.write(
        f"LIME: max {max(lime_seconds):.2f} s, median {np.median(lime_seconds):.2f} s over {len(lime_seconds)} pairs\n"
        f"SHAP: first call {shap_first_s:.2f} s, then median {np.median(shap_seconds):.3f} s; "
        f"additivity max rel error {additivity.max_rel_error:.2e}\n"
        f"deletion test: pass rate {deletion.pass_rate:.2f} over {result['deletion']['pairs']} pairs\n"
        f"checks: {checks}\nwrote {path}\n"
    )
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
