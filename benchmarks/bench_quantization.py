"""Benchmark cheaper text-encoder settings and the serving path on MovieLens-100k.

The settings are those of ``vidrec_lab.efficiency.DEFAULT_SETTINGS``:
float32; dynamic int8 with the first feed-forward output layer in float32;
int8 with every feed-forward output layer in float32; int8 on every Linear
layer; 32 tokens; the first 3 of 6 layers; and int8 with 3 layers. Each one encodes the 1682 composed
item texts with all-MiniLM-L6-v2 on 2 PyTorch threads for ``--repeats``
rounds, with the settings taking turns, and the fastest round counts. The
script reports:

* items/s (wall clock) and the speed-up over float32;
* items/s over process CPU time (less disturbed by other processes);
* mean and minimum cosine between the setting's vectors and float32's;
* NDCG@10 (full ranking, leave-last-out, 95% bootstrap interval) of a
  content recommender that ranks items by cosine to the mean of the user's
  history vectors.

Then it times the serving path: the catalog encoded once into a fresh
feature cache, reloaded from the cache by a new encoder, and single-user
top-10 requests against the precomputed vectors.

Target: the ``int8`` setting at least 1.5x faster than float32 with mean
cosine above 0.98. The script reports whether it was met and exits 0
either way; the numbers are what matters.

The table is printed, and everything (with hardware and versions) goes to
``outputs/benchmarks/quantization.json``, written atomically.

Usage::

    .venv/bin/python benchmarks/bench_quantization.py [--data PATH/ml-100k] [--repeats 3] [--requests 500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from _data import default_data_folder  # benchmarks/_data.py, beside this script
from vidrec_lab.config import outputs_dir
from vidrec_lab.datasets import load_movielens_100k
from vidrec_lab.efficiency import DEFAULT_SETTINGS, compare_encoder_settings, measure_serving_path
from vidrec_lab.io import atomic_write_json
from vidrec_lab.runner import hardware_info, package_versions
from vidrec_lab.splits import leave_last_out

THREADS = 2
TARGET_SPEEDUP = 1.5
TARGET_COSINE = 0.98
TARGET_SETTING = "int8"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data_folder(), help="MovieLens-100k folder (default: the shared datasets folder)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per setting (default 3)")
    parser.add_argument("--requests", type=int, default=500, help="timed single-user requests (default 500)")
    parser.add_argument("--output", type=Path, default=None, help="JSON file (default outputs/benchmarks/quantization.json)")
    args = parser.parse_args(argv)

    torch.set_num_threads(THREADS)
    started = time.perf_counter()
    dataset = load_movielens_100k(args.data, download=False)
    split = leave_last_out(dataset.interactions, items=dataset.items)
    table = compare_encoder_settings(split, dataset.items, DEFAULT_SETTINGS, repeats=args.repeats, num_threads=THREADS)
    with tempfile.TemporaryDirectory() as cache:
        serving = measure_serving_path(dataset.items, split.history("test"), cache_folder=cache, n_requests=args.requests, num_threads=THREADS)

    target = table.set_index("setting").loc[TARGET_SETTING]
    met = bool(target["speedup"] >= TARGET_SPEEDUP and target["mean_cosine"] > TARGET_COSINE)
    columns = table[["setting", "items_per_s", "speedup", "cpu_items_per_s", "mean_cosine", "min_cosine", "ndcg", "ci_low", "ci_high"]]
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(columns.round(4).to_string(index=False))
    print(
        f"serving: catalog of {serving['n_items']} items encoded in {serving['first_encode_s']:.1f} s, "
        f"reloaded from the cache in {serving['cached_load_s']:.2f} s; one top-{serving['k']} request: "
        f"median {serving['median_ms']:.3f} ms, p95 {serving['p95_ms']:.3f} ms"
    )
    print(
        f"target ({TARGET_SETTING} >= {TARGET_SPEEDUP}x faster, mean cosine > {TARGET_COSINE}): "
        f"{'met' if met else 'NOT met'} (speed-up {target['speedup']:.2f}x, mean cosine {target['mean_cosine']:.4f})"
    )
    output = args.output or outputs_dir("benchmarks") / "quantization.json"
    atomic_write_json(output, {
        "benchmark": "quantization",
        "data": str(args.data),
        "threads": THREADS,
        "repeats": args.repeats,
        "settings": table.to_dict(orient="records"),
        "serving": serving,
        "target": {"setting": TARGET_SETTING, "speedup": TARGET_SPEEDUP, "mean_cosine": TARGET_COSINE, "met": met},
        "seconds": round(time.perf_counter() - started, 1),
        "hardware": hardware_info(),
        "versions": package_versions(),
    })
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
