"""Atomic file writes and the metrics files that notebooks and scripts compare.

Every file the package writes goes to a temporary file in the same folder
first and is then renamed over the target, so an interrupted run never leaves
half a file behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from vidrec_lab.config import outputs_dir
from vidrec_lab.constants import ENV_PSEUDONYMIZE

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` and rename it onto ``target`` on success.

    The temporary file is removed when the block raises, so the target is
    either the old file or the complete new one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates the file with mode 0600; give it the mode a plain open() would have.
        os.chmod(tmp_path, 0o666 & ~_current_umask())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _current_umask() -> int:
    # Linux shows the umask in /proc without changing it; os.umask() must set it to read it,
    # which for a moment affects files other threads create.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically and return the path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``target`` atomically and return the path."""
    return atomic_write_bytes(target, text.encode("utf-8"))


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return _to_jsonable(value.to_dict())
    return value


def atomic_write_json(target: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as indented JSON (NumPy values converted) atomically."""
    text = json.dumps(_to_jsonable(payload), indent=2, ensure_ascii=False, sort_keys=False)
    return atomic_write_text(target, text + "\n")


def write_metrics(name: str, metrics: Any, *, params: dict | None = None, folder: str | os.PathLike | None = None) -> Path:
    """Write ``outputs/metrics/<name>.json`` with the metrics and the parameters behind them.

    Args:
        name (str): File stem, usually the notebook's short name (``"quickstart"``).
        metrics: A dict, a list of records or a DataFrame (stored as records).
        params (dict, optional): Seed, profile, split fingerprint and other
            settings that produced the metrics.
        folder (path, optional): Folder to write into; default ``outputs/metrics``.

    Returns:
        pathlib.Path: The file written.

    Note:
        With ``VIDREC_LAB_PSEUDONYMIZE=1``, every field named ``user_id`` in
        ``metrics`` and ``params`` is replaced by its pseudonym
        (:func:`vidrec_lab.privacy.pseudonymize_records`).
    """
    if hasattr(metrics, "to_dict") and hasattr(metrics, "columns"):
        metrics = metrics.to_dict(orient="records")
    metrics, params = _pseudonymize_if_enabled(metrics), _pseudonymize_if_enabled(params)
    folder = Path(folder) if folder is not None else outputs_dir("metrics")
    path = folder / f"{name}.json"
    payload = {
        "name": name,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "params": params or {},
        "metrics": metrics,
    }
    atomic_write_json(path, payload)
    logger.info("wrote metrics %s", path)
    return path


def _pseudonymize_if_enabled(payload: Any) -> Any:
    # The variable is checked here first so that writing metrics imports vidrec_lab.privacy
    # (and torch with it) only when pseudonymisation may be on.
    if not os.environ.get(ENV_PSEUDONYMIZE, "").strip():
        return payload
    from vidrec_lab import privacy

    return privacy.pseudonymize_records(_to_jsonable(payload)) if privacy.enabled() else payload


def read_metrics(name_or_path: str | os.PathLike) -> dict:
    """Read a metrics file written by :func:`write_metrics` (by name or path)."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = outputs_dir("metrics") / f"{name_or_path}.json"
    if not path.is_file():
        raise FileNotFoundError(f"metrics file not found: {path}; run the notebook that writes it first")
    return json.loads(path.read_text(encoding="utf-8"))
