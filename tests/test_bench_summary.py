"""Tests of the headline table that ``make bench`` prints (benchmarks/run_all.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "run_all.py"


@pytest.fixture(scope="module")
def run_all():
    spec = importlib.util.spec_from_file_location("run_all", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _payloads(recommend_s: float) -> dict:
    return {
        "text_encoder": {"best_ratio_text_encoder_over_sentence_transformers": 0.77, "cached_rerun_seconds": 0.045},
        "retrieval": {"two_tower_movielens": {"train_s": 3.7, "recommend_s": recommend_s}, "large_catalog": {"exact_s": 3.1}},
        "quantization": {
            "settings": [{"setting": "float32", "speedup": 1.0, "mean_cosine": 1.0}, {"setting": "int8", "speedup": 1.91, "mean_cosine": 0.9819}],
            "serving": {"median_ms": 0.083},
        },
        "explain": {"lime": {"max_seconds": 0.19}},
    }


def test_rows_read_values_and_judge_targets(run_all):
    demo = {"run_id": "r1", "total_s": 778.5, "peak_kernel_rss_mib": 1705.9}
    rows = {row[0]: row for row in run_all.headline_rows(_payloads(0.437), demo, [{"peak_rss_mib": 1552.0}])}
    assert rows["top-10 for all 943 users over 1682 items"] == ("top-10 for all 943 users over 1682 items", "0.437 s", "< 1 s", "yes")
    assert rows["int8 encoder speed-up"][1:] == ("1.91 x", ">= 1.5x", "yes")
    assert rows["int8 mean cosine to float32"][1:] == ("0.982", "> 0.98", "yes")
    assert rows["two-tower training, one ml-100k epoch"][1:] == ("3.7 s", "", "")
    assert rows["make demo, fast profile (run r1)"][1:] == ("778 s", "< 1200 s", "yes")
    assert rows["peak memory of a benchmark process"][1:] == ("1552 MiB", "< 4096 MiB", "yes")


def test_missed_target_and_missing_result(run_all):
    payloads = _payloads(1.4)
    del payloads["explain"]
    rows = {row[0]: row for row in run_all.headline_rows(payloads, None, [])}
    assert rows["top-10 for all 943 users over 1682 items"][3] == "NO"
    assert rows["LIME explanation of one recommendation, max"][1] == "not run"
    assert rows["make demo, fast profile"][1] == "no complete fast run under outputs/runs"
    assert "peak memory of a benchmark process" not in rows
