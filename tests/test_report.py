"""Tests of vidrec_lab.report: the run report, two runs side by side, and the figure gallery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from vidrec_lab import cli
from vidrec_lab.report import build_gallery, build_report, write_report


def _run_folder(root: Path, run_id: str, ndcg: float, seconds: float) -> Path:
    folder = root / "outputs" / "runs" / run_id
    (folder / "metrics").mkdir(parents=True)
    (folder / "figures").mkdir()
    record = {
        "run_id": run_id,
        "params": {"profile": "fast", "seed": 42},
        "notebooks": [{"name": "00_quickstart", "status": "ok", "seconds": seconds}],
        "total_seconds": seconds,
        "versions": {"torch": "2.13.0"},
        "hardware": {"cpu_count": 2},
    }
    (folder / "run.json").write_text(json.dumps(record), encoding="utf-8")
    metrics = {"metrics": [
        {"model": "EASE", "metric": "ndcg", "k": 10, "value": ndcg},
        {"model": "ItemKNN", "metric": "ndcg", "k": 10, "value": 0.0361},
    ]}
    (folder / "metrics" / "quickstart.json").write_text(json.dumps(metrics), encoding="utf-8")
    Image.new("RGB", (1800, 900), (0, 114, 178)).save(folder / "figures" / "00_quickstart_metric_comparison.png")
    return folder


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDREC_LAB_HOME", str(tmp_path))
    return _run_folder(tmp_path, "a", 0.0395, 70.5), _run_folder(tmp_path, "b", 0.0400, 69.0)


def test_report_lists_tables_times_and_figures(runs):
    markdown, page = build_report("a")
    assert "| EASE | ndcg | 10 | 0.0395 |" in markdown
    assert "| 00_quickstart | ok | 70.5 |" in markdown
    assert "![00_quickstart_metric_comparison](figures/00_quickstart_metric_comparison.png)" in markdown
    assert "<table>" in page
    assert "<img" in page


def test_two_runs_side_by_side_show_the_difference(runs):
    markdown, _ = build_report("a", "b")
    row = next(line for line in markdown.splitlines() if line.startswith("| EASE |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:5] == ["EASE", "ndcg", "10", "0.0395", "0.04"]
    assert float(cells[5]) == pytest.approx(0.0005)
    identical = next(line for line in markdown.splitlines() if line.startswith("| ItemKNN |"))
    assert identical.rstrip(" |").endswith("0")


def test_write_report_names_the_pair(runs):
    md_path, html_path = write_report("a", "b")
    assert md_path.name == "report-vs-b.md"
    assert html_path.name == "report-vs-b.html"
    assert md_path.parent == runs[0]


def test_unknown_run_lists_the_runs_present(runs):
    with pytest.raises(FileNotFoundError, match=r"run 'zzz' not found.*runs present: \['a', 'b'\]"):
        build_report("zzz")


def test_gallery_scales_down_and_keeps_the_aspect(runs, tmp_path):
    written = build_gallery("a", tmp_path / "gallery", ["00_quickstart_metric_comparison"], max_width=600)
    assert [p.name for p in written] == ["00_quickstart_metric_comparison.png"]
    with Image.open(written[0]) as image:
        assert image.size == (600, 300)
        assert image.mode == "P"  # palette PNG: a small file for the repository
    assert list((tmp_path / "gallery").iterdir()) == written  # no temporary file left


def test_gallery_names_a_missing_figure(runs, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"figure\(s\) \['05_recommendation_warm_comparison'\] not in .*it has \['00_quickstart_metric_comparison'\]"):
        build_gallery("a", tmp_path / "gallery", ["05_recommendation_warm_comparison"])
    assert not (tmp_path / "gallery").exists()
    with pytest.raises(ValueError, match="max_width must be a positive integer; got 0"):
        build_gallery("a", tmp_path / "gallery", ["00_quickstart_metric_comparison"], max_width=0)


def test_cli_gallery_writes_into_docs(runs, tmp_path, capsys):
    assert cli.main(["gallery", "a", "--names", "00_quickstart_metric_comparison", "--max-width", "300"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(tmp_path / "docs" / "gallery" / "00_quickstart_metric_comparison.png")


def test_nested_metrics_get_their_own_tables(runs):
    nested = {"metrics": {
        "interactions": 100000,
        "sparsity": 0.937,
        "privacy_utility": [{"model": "DP eps=1", "value": 0.0129}, {"model": "non-private", "value": 0.0312}],
        "serving": {"median_ms": 0.083, "n_items": 1682},
    }}
    (runs[0] / "metrics" / "privacy_efficiency.json").write_text(json.dumps(nested), encoding="utf-8")
    markdown, _ = build_report("a")
    assert "### privacy_efficiency: privacy_utility" in markdown
    assert "| DP eps=1 | 0.0129 |" in markdown
    assert "### privacy_efficiency: serving" in markdown
    assert "| median_ms | 0.083 |" in markdown
    # Whole numbers keep their digits instead of turning into 1e+05.
    assert "| interactions | 100,000 |" in markdown
    assert "| sparsity | 0.937 |" in markdown


def test_cli_error_exits_with_status_2(runs, caplog):
    assert cli.main(["report", "nosuchrun"]) == 2
    assert "run 'nosuchrun' not found" in caplog.text
    assert "add -v for the traceback" in caplog.text
    caplog.clear()
    assert cli.main(["run", "99"]) == 2
    assert "no notebook matches '99'" in caplog.text
