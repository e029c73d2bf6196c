"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_datasets_path() -> Path:
    env = os.environ.get("VIDREC_LAB_SHARED_DATASETS", "").strip()
    return Path(env).expanduser().resolve() if env else (REPO.parent / "shared" / "datasets").resolve()


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """Return the read-only real-data folder, or skip the test when it is absent.

    The folder is ``$VIDREC_LAB_SHARED_DATASETS`` when set, else
    ``<repo>/../shared/datasets``. Tests read it in place and never write there.
    """
    path = _shared_datasets_path()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} not found; set VIDREC_LAB_SHARED_DATASETS to run this test")
    return path


@pytest.fixture
def isolated_home(tmp_path, monkeypatch) -> Path:
    """Point ``VIDREC_LAB_HOME`` at an empty folder and unset ``VIDREC_LAB_DATA``.

    Code that writes ``data/``, ``outputs/`` or ``figures/`` then writes under
    the returned folder, and no data set is found unless the test puts it there.
    """
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("VIDREC_LAB_HOME", str(home))
    monkeypatch.delenv("VIDREC_LAB_DATA", raising=False)
    return home
