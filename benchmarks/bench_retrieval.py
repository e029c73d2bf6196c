"""Benchmark top-K retrieval: the two-tower model on MovieLens-100k, then exact versus FAISS on a large catalog.

Part 1 trains :class:`~vidrec_lab.models.two_tower.TwoTowerRecommender` on
the ml-100k leave-last-out split (``--epochs``, default 1: the timing does not
depend on how well the model is trained) and times
``recommend(all 943 users, k=10, history=split.history("test"))`` over all
1682 items, best of ``--repeats``. Each repeat starts from an empty item-vector
cache, so the time covers the item tower, the user tower over each user's
time-ordered history, the scoring and the top-K. It also times the same
lists from :class:`~vidrec_lab.retrieval.EmbeddingRetriever` on the model's
vectors, exact and (when ``faiss-cpu`` is installed) FAISS.

Part 2 times :func:`~vidrec_lab.retrieval.exact_top_k` against a flat and an
IVF FAISS index on random vectors (``--large-items`` x ``--dim``, with
``--large-users`` users who have 50 seen items each) and reports the IVF
index's recall of the exact top 10.

Check (exit status 1 when it fails): part 1's ``recommend`` takes under 1 s.
Results go to ``outputs/benchmarks/retrieval.json``. Run it on an otherwise
idle machine: other jobs on the same cores inflate every time.

Usage::

    .venv/bin/python benchmarks/bench_retrieval.py [--data PATH/ml-100k] [--epochs 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _data import default_data_folder  # noqa: E402  # benchmarks/_data.py, beside this script
from vidrec_lab.config import outputs_dir  # noqa: E402
from vidrec_lab.io import atomic_write_json  # noqa: E402
from vidrec_lab.retrieval import EmbeddingRetriever, FaissIndex, exact_top_k  # noqa: E402
from vidrec_lab.runner import hardware_info  # noqa: E402

THREADS = 2
TARGET_S = 1.0
K = 10

logger = logging.getLogger("bench_retrieval")


def best_time(function, repeats: int) -> tuple[float, object]:
    """Return the fastest of ``repeats`` calls and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def bench_two_tower(folder: Path, epochs: int, repeats: int) -> dict:
    from vidrec_lab.datasets.movielens import load_movielens_100k
    from vidrec_lab.features.text import TextCleaningConfig, encode_items
    from vidrec_lab.models.two_tower import TwoTowerRecommender, item_content_features
    from vidrec_lab.splits import leave_last_out

    data = load_movielens_100k(folder, download=False)
    split = leave_last_out(data.interactions, items=data.items)
    _, text = encode_items(data.items, cleaning=TextCleaningConfig(movielens_title=True))
    features = item_content_features(data.items, text)
    model = TwoTowerRecommender(features, max_epochs=epochs, progress_bar=False)
    model.fit(split.train, data.items, valid=split.valid)
    users = sorted(data.interactions["user_id"].unique())
    history = split.history("test")

    def recommend():
        model.item_vectors(refresh=True)  # count the item tower too
        return model.recommend(users, k=K, history=history)

    recommend_s, recs = best_time(recommend, repeats)
    user_vectors = model.user_vectors(users, history)
    result = {
        "users": len(users),
        "items": len(model.item_ids_),
        "k": K,
        "epochs_trained": len(model.history_),
        "train_s": round(model.train_time_s_, 2),
        "recommend_s": round(recommend_s, 4),
        "rows_returned": len(recs),
        "target_s": TARGET_S,
        "passed": recommend_s < TARGET_S,
    }
    user_vectors_s, _ = best_time(lambda: model.user_vectors(users, history), repeats)
    result["user_vectors_s"] = round(user_vectors_s, 4)
    exact = EmbeddingRetriever.from_model(model)
    result["retriever_exact_s"] = round(best_time(lambda: exact.recommend(users, user_vectors, K, history=history), repeats)[0], 4)
    if has_faiss():
        flat = EmbeddingRetriever.from_model(model, backend="faiss")
        result["retriever_faiss_flat_s"] = round(best_time(lambda: flat.recommend(users, user_vectors, K, history=history), repeats)[0], 4)
    return result


def bench_large_catalog(n_items: int, n_users: int, dim: int, repeats: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n_items, dim)).astype(np.float32)
    users = rng.normal(size=(n_users, dim)).astype(np.float32)
    seen = [rng.choice(n_items, size=50, replace=False) for _ in range(n_users)]
    result = {"items": n_items, "users": n_users, "dim": dim, "k": K, "seen_per_user": 50}
    exact_s, exact = best_time(lambda: exact_top_k(users, items, K, exclude=seen, chunk_size=256), repeats)
    result["exact_s"] = round(exact_s, 4)
    if not has_faiss():
        result["faiss"] = "faiss-cpu is not installed"
        return result
    for name, factory in (("faiss_flat", "Flat"), ("faiss_ivf", "IVF1024,Flat")):
        started = time.perf_counter()
        index = FaissIndex(items, factory=factory, nprobe=32)
        build_s = time.perf_counter() - started
        search_s, found = best_time(lambda: index.search(users, K, exclude=seen), repeats)
        overlap = np.mean([len(set(a) & set(b)) / K for a, b in zip(found.indices, exact.indices)])
        result[f"{name}_build_s"] = round(build_s, 3)
        result[f"{name}_search_s"] = round(search_s, 4)
        result[f"{name}_recall_of_exact"] = round(float(overlap), 4)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="MovieLens-100k folder (default: the shared datasets folder)")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs before timing (timing does not depend on them)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement; the fastest counts")
    parser.add_argument("--large-items", type=int, default=200_000, help="items in the random large catalog")
    parser.add_argument("--large-users", type=int, default=1000, help="users queried against the large catalog")
    parser.add_argument("--dim", type=int, default=64, help="vector size in the large catalog")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(THREADS)

    folder = args.data or default_data_folder()
    if not folder.is_dir():
        parser.error(f"MovieLens-100k folder not found: {folder}; pass --data or set VIDREC_LAB_SHARED_DATASETS")
    two_tower = bench_two_tower(folder, args.epochs, args.repeats)
    logger.info("two-tower recommend for %d users over %d items: %.3f s (target < %.1f s)", two_tower["users"], two_tower["items"], two_tower["recommend_s"], TARGET_S)
    large = bench_large_catalog(args.large_items, args.large_users, args.dim, args.repeats)
    logger.info("large catalog: %s", large)

    payload = {
        "benchmark": "retrieval",
        "torch_threads": THREADS,
        "hardware": hardware_info(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "two_tower_movielens": two_tower,
        "large_catalog": large,
    }
    path = atomic_write_json(outputs_dir("benchmarks") / "retrieval.json", payload)
    logger.info("wrote %s", path)
    return 0 if two_tower["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
