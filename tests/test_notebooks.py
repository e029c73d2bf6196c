"""Execute every notebook top to bottom, as users and CI do, through the runner.

Each run happens in a scratch project home (a copy of ``notebooks/``), so the
tests never write into the checkout's ``outputs/`` or ``figures/``. The smoke
runs have pseudonymisation switched on, and every file they write under
``outputs/`` and ``figures/`` is scanned for the raw user ids of the smoke
data set.
"""

import json
import shutil
from pathlib import Path

import pytest

from conftest import _shared_datasets_path
from vidrec_lab import privacy, runner
from vidrec_lab.constants import COL_USER

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SMOKE_SEED = 7
PSEUDONYM_KEY = "notebook-smoke-test-key-0123456789"


@pytest.fixture
def scratch_home(tmp_path, monkeypatch):
    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks")
    monkeypatch.setenv("VIDREC_LAB_HOME", str(tmp_path))
    # A run sets these for its kernels; keep them from leaking into later tests.
    monkeypatch.delenv("VIDREC_LAB_NOTEBOOK", raising=False)
    shared = _shared_datasets_path()
    if shared.is_dir():
        # The smoke profile trains on synthetic data either way; the real MicroLens videos, when
        # present, let notebooks 01 and 02 run their media sections in CI too.
        monkeypatch.setenv("VIDREC_LAB_DATA", str(shared))
    else:
        monkeypatch.delenv("VIDREC_LAB_DATA", raising=False)
    return tmp_path


def test_notebooks_exist():
    assert "00_quickstart" in NOTEBOOKS


def _smoke_user_ids() -> list[str]:
    from vidrec_lab.datasets import load_for_profile

    user_ids = load_for_profile("smoke", seed=SMOKE_SEED).users[COL_USER].astype(str).tolist()
    # Synthetic ids look like "u0042", so the scan matches them anywhere, not only in id columns.
    assert user_ids and all(not u.isdigit() for u in user_ids)
    return user_ids


@pytest.mark.notebook
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_smoke_profile(name, scratch_home, monkeypatch):
    monkeypatch.setenv("VIDREC_LAB_PSEUDONYMIZE", "1")
    monkeypatch.setenv("VIDREC_LAB_PSEUDONYM_KEY", PSEUDONYM_KEY)
    record = runner.run_notebooks([name], profile="smoke", seed=SMOKE_SEED, run_id="smoke-test")
    assert [nb.status for nb in record.notebooks] == ["ok"]
    executed = scratch_home / "outputs" / "runs" / "smoke-test" / "notebooks" / f"{name}.ipynb"
    cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    figures = list((scratch_home / "figures").glob(f"{name}_*.png"))
    assert figures, f"{name} saved no figure through save_figure"
    assert list((scratch_home / "figures").glob(f"{name}_*.pdf"))
    user_ids = _smoke_user_ids()
    for folder in ("outputs", "figures"):
        assert privacy.scan_for_raw_ids(scratch_home / folder, user_ids) == [], f"{name} wrote raw user ids under {folder}/"


@pytest.mark.notebook
@pytest.mark.realdata
def test_quickstart_on_movielens_100k(scratch_home, shared_datasets):
    ml100k = shared_datasets / "ml-100k"
    runner.run_notebooks(["00"], profile="fast", seed=42, data_path=str(ml100k), run_id="real")
    payload = json.loads((scratch_home / "outputs" / "metrics" / "quickstart.json").read_text(encoding="utf-8"))
    ndcg = {row["model"]: row["value"] for row in payload["metrics"] if row["metric"] == "ndcg" and row["k"] == 10}
    assert ndcg["EASE"] >= 0.033
    assert ndcg["EASE"] > ndcg["MostPopular"]
    assert payload["params"]["dataset"] == "ml-100k"
    assert payload["params"]["split_fingerprint"]
    record = json.loads((scratch_home / "outputs" / "runs" / "real" / "run.json").read_text(encoding="utf-8"))
    assert record["data_folder"] == str(ml100k.resolve())
    assert record["peak_kernel_rss_mib"] == record["notebooks"][0]["peak_rss_so_far_mib"] > 0
    for stem in ("interaction_statistics", "metric_comparison"):
        assert (scratch_home / "figures" / f"00_quickstart_{stem}.png").is_file()
        assert (scratch_home / "figures" / f"00_quickstart_{stem}.pdf").is_file()


def test_runner_stops_at_failing_cell(scratch_home):
    import nbformat

    broken = nbformat.v4.new_notebook()
    broken.cells = [
        nbformat.v4.new_code_cell("PROFILE = 'smoke'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("raise ValueError('injected failure')"),
        nbformat.v4.new_code_cell("y = 2"),
    ]
    broken.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(broken, scratch_home / "notebooks" / "98_broken.ipynb")
    ok = nbformat.v4.new_notebook()
    ok.cells = [nbformat.v4.new_code_cell("PROFILE = 'smoke'", metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell("z = 3")]
    ok.metadata["kernelspec"] = broken.metadata["kernelspec"]
    nbformat.write(ok, scratch_home / "notebooks" / "97_fine.ipynb")

    # Cell 4 is the execution count shown in the saved copy: papermill adds one cell of injected parameters.
    with pytest.raises(runner.NotebookFailed, match=r"notebook 98_broken failed in cell 4: ValueError: injected failure") as info:
        runner.run_notebooks(["97", "98"], profile="smoke", run_id="broken")
    assert info.value.output_path.is_file()
    record = json.loads((scratch_home / "outputs" / "runs" / "broken" / "run.json").read_text(encoding="utf-8"))
    assert [nb["status"] for nb in record["notebooks"]] == ["ok", "failed"]
    assert (scratch_home / "outputs" / "notebooks" / "97_fine.ipynb").is_file()
