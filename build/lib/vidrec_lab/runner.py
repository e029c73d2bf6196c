"""Run the notebooks headless, in order, with one profile, and keep a record of the run.

Each notebook is executed with papermill, which injects the run's parameters
(``PROFILE``, ``SEED``, ``DATA_PATH``) after the cell tagged ``parameters``.
The executed copies go to ``outputs/runs/<run-id>/notebooks/`` and the latest
copy of each to ``outputs/notebooks/``. The first failing notebook stops the
run; its partly executed copy is kept and the error names the notebook, the
cell and the exception.

A run record ``outputs/runs/<run-id>/run.json`` stores the parameters,
package versions, hardware and the wall time of each notebook, and the
metrics files the notebooks wrote are copied beside it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from vidrec_lab.config import PROFILES, project_home
from vidrec_lab.constants import DEFAULT_SEED, ENV_DATA, ENV_HOME
from vidrec_lab.io import atomic_write_json

logger = logging.getLogger(__name__)

RECORDED_PACKAGES = ("vidrec_lab", "torch", "transformers", "lightning", "sentence-transformers", "numpy", "pandas", "scikit-learn", "shap", "lime", "av", "librosa", "papermill")


class NotebookFailed(RuntimeError):
    """Raised when a notebook fails; names the notebook, the cell and the error.

    ``cell`` is the execution count of the failing cell as shown in the saved
    copy, which counts the cell of parameters papermill injects.
    """

    def __init__(self, notebook: str, cell: int | None, error: str, output_path: Path):
        self.notebook = notebook
        self.cell = cell
        self.error = error
        self.output_path = output_path
        where = f"cell {cell}" if cell is not None else "an unknown cell"
        super().__init__(f"notebook {notebook} failed in {where}: {error}\npartly executed copy: {output_path}")


@dataclass
class NotebookRun:
    """Outcome of one notebook in a run."""

    name: str
    status: str  # "ok", "failed", "skipped"
    seconds: float
    output: str
    fingerprint: str
    error: str | None = None
    # Largest resident memory of any kernel so far in this run (MiB), not this notebook's own peak:
    # RUSAGE_CHILDREN keeps a running maximum over the finished kernels.
    peak_rss_so_far_mib: float | None = None


@dataclass
class RunRecord:
    """What a run did, written to ``run.json``."""

    run_id: str
    folder: Path
    params: dict
    notebooks: list[NotebookRun] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "params": self.params,
            "notebooks": [nb.__dict__ for nb in self.notebooks],
            "total_seconds": round(sum(nb.seconds for nb in self.notebooks), 2),
            "peak_kernel_rss_mib": max((nb.peak_rss_so_far_mib or 0 for nb in self.notebooks), default=None),
            "data_folder": os.environ.get(ENV_DATA) or None,
            "versions": package_versions(),
            "hardware": hardware_info(),
        }

    def save(self) -> Path:
        return atomic_write_json(self.folder / "run.json", self.to_dict())


def package_versions() -> dict:
    """Return installed versions of the packages that shape results."""
    versions = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def hardware_info() -> dict:
    """Return the machine description stored with every run (CPU count, memory, GPU)."""
    info = {"machine": platform.machine(), "system": platform.system(), "cpus": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        info["cpus_available"] = len(os.sched_getaffinity(0))
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            info["memory_gib"] = round(int(handle.readline().split()[1]) / 2**20, 1)
    except OSError:
        info["memory_gib"] = None
    try:
        import torch

        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["cuda"] = None
    return info


def notebooks_dir() -> Path:
    return project_home() / "notebooks"


def list_notebooks(names: list[str] | None = None) -> list[Path]:
    """Return the numbered notebooks in order, or those matching ``names`` (prefix or stem)."""
    found = sorted(p for p in notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return found
    chosen = []
    for name in names:
        matches = [p for p in found if p.stem == name or p.stem.startswith(f"{name}_") or p.name == name]
        if not matches:
            raise FileNotFoundError(
                f"no notebook matches {name!r} in {notebooks_dir()}; available: {[p.stem for p in found]}"
            )
        chosen.extend(m for m in matches if m not in chosen)
    return sorted(chosen)


def _package_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _fingerprint(notebook: Path, params: dict, package_digest: str) -> str:
    """Digest of what decides a notebook's results: its source, the parameters, the package code and the data folder."""
    digest = hashlib.sha256(notebook.read_bytes())
    digest.update(json.dumps(params, sort_keys=True).encode())
    digest.update(package_digest.encode())
    digest.update(os.environ.get(ENV_DATA, "").encode())
    return digest.hexdigest()[:16]


def _failed_cell(err: Exception) -> tuple[int | None, str]:
    cell = getattr(err, "exec_count", None)
    ename = getattr(err, "ename", None)
    evalue = getattr(err, "evalue", None)
    message = f"{ename}: {evalue}" if ename else str(err).strip().splitlines()[-1]
    return cell, message


def run_notebooks(
    names: list[str] | None = None,
    *,
    profile: str = "fast",
    seed: int = DEFAULT_SEED,
    data_path: str | None = None,
    run_id: str | None = None,
    resume: bool = False,
    kernel_name: str = "python3",
) -> RunRecord:
    """Execute notebooks in order with one profile and seed, and write the run record.

    Args:
        names (list of str, optional): Notebook stems or number prefixes
            (``["00", "05_recommendation"]``); default all.
        profile (str): ``smoke``, ``fast`` or ``full``.
        seed (int): Seed passed to every notebook.
        data_path (str, optional): Data folder passed to every notebook (and
            exported as ``VIDREC_LAB_DATA``); default the loaders' own lookup.
        run_id (str, optional): Folder name under ``outputs/runs``; default a UTC time stamp.
        resume (bool): Skip notebooks whose source and parameters match the
            last successful run recorded in ``outputs/runs/latest.json``.
        kernel_name (str): Jupyter kernel to run with.

    Raises:
        NotebookFailed: at the first failing notebook, after the record is saved.
    """
    import papermill

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}; got {profile!r}")
    home = project_home()
    notebooks = list_notebooks(names)
    if not notebooks:
        raise FileNotFoundError(f"no notebooks found in {notebooks_dir()}")
    run_id = run_id or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + f"-{profile}"
    run_folder = home / "outputs" / "runs" / run_id
    (run_folder / "notebooks").mkdir(parents=True, exist_ok=True)
    latest_folder = home / "outputs" / "notebooks"
    latest_folder.mkdir(parents=True, exist_ok=True)
    params = {"PROFILE": profile, "SEED": int(seed), "DATA_PATH": data_path}
    record = RunRecord(run_id=run_id, folder=run_folder, params=params)
    previous = _load_latest(home) if resume else {}
    package_digest = _package_digest()

    # The kernels inherit these variables; they are restored when the run ends, so a caller's
    # process (a test session, a notebook) keeps its own settings.
    saved_env = {name: os.environ.get(name) for name in (ENV_HOME, ENV_DATA, "VIDREC_LAB_NOTEBOOK")}
    os.environ[ENV_HOME] = str(home)
    if data_path:
        os.environ[ENV_DATA] = str(Path(data_path).expanduser().resolve())
    try:
        return _run_all(notebooks, record, previous, package_digest, params, profile, run_folder, latest_folder, home, resume, kernel_name, papermill)
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run_all(notebooks, record, previous, package_digest, params, profile, run_folder, latest_folder, home, resume, kernel_name, papermill) -> RunRecord:
    run_id = record.run_id
    seed = params["SEED"]
    logger.info("run %s: %d notebooks, profile %s, seed %d", run_id, len(notebooks), profile, seed)
    for position, notebook in enumerate(notebooks, start=1):
        fingerprint = _fingerprint(notebook, params, package_digest)
        output = run_folder / "notebooks" / notebook.name
        prefix = f"[{position}/{len(notebooks)}] {notebook.stem}"
        if resume and previous.get(notebook.stem) == fingerprint:
            _report(f"{prefix}: unchanged since the last run, skipped")
            record.notebooks.append(NotebookRun(notebook.stem, "skipped", 0.0, str(output), fingerprint))
            continue
        _report(f"{prefix}: running ({profile} profile)")
        os.environ["VIDREC_LAB_NOTEBOOK"] = notebook.stem
        started = time.time()
        try:
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters=params,
                kernel_name=kernel_name,
                cwd=str(notebook.parent),
                progress_bar=sys.stderr.isatty(),
                log_output=False,
            )
        except Exception as err:  # papermill raises PapermillExecutionError, or kernel errors
            seconds = time.time() - started
            cell, message = _failed_cell(err)
            record.notebooks.append(NotebookRun(notebook.stem, "failed", round(seconds, 2), str(output), fingerprint, message))
            record.save()
            _report(f"{prefix}: FAILED after {seconds:.1f} s in cell {cell}: {message}")
            raise NotebookFailed(notebook.stem, cell, message, output) from err
        seconds = time.time() - started
        shutil.copyfile(output, latest_folder / notebook.name)
        _copy_new_outputs(home, run_folder, since=started)
        record.notebooks.append(NotebookRun(notebook.stem, "ok", round(seconds, 2), str(output), fingerprint, peak_rss_so_far_mib=_peak_child_rss_mib()))
        record.save()
        _report(f"{prefix}: done in {seconds:.1f} s")
    _save_latest(home, record)
    total = sum(nb.seconds for nb in record.notebooks)
    _report(f"run {run_id}: {len(record.notebooks)} notebooks in {total:.1f} s; record in {run_folder}")
    return record


def _peak_child_rss_mib() -> float | None:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    # ru_maxrss is in KiB on Linux (bytes on macOS); covers finished child processes only.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    scale = 2**20 if sys.platform == "darwin" else 2**10
    return round(peak / scale, 1)


def _report(line: str) -> None:
    # One progress line per notebook; the command-line entry point sends INFO logs to stderr.
    logger.info(line)


def _copy_new_outputs(home: Path, run_folder: Path, *, since: float) -> None:
    """Copy the metrics files and PNG figures a notebook wrote into the run folder."""
    for source, pattern, target in (
        (home / "outputs" / "metrics", "*.json", run_folder / "metrics"),
        (home / "figures", "*.png", run_folder / "figures"),
    ):
        if not source.is_dir():
            continue
        target.mkdir(exist_ok=True)
        for path in source.glob(pattern):
            if path.stat().st_mtime >= since - 1:
                shutil.copyfile(path, target / path.name)


def _load_latest(home: Path) -> dict:
    path = home / "outputs" / "runs" / "latest.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8")).get("fingerprints", {})


def _save_latest(home: Path, record: RunRecord) -> None:
    fingerprints = _load_latest(home)
    for nb in record.notebooks:
        if nb.status in ("ok", "skipped"):
            fingerprints[nb.name] = nb.fingerprint
    atomic_write_json(home / "outputs" / "runs" / "latest.json", {"run_id": record.run_id, "fingerprints": fingerprints})
