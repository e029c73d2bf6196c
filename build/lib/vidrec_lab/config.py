"""Run profiles, seeds and the folders where results land.

A profile sets how much data and training a notebook uses:

* ``smoke``: a tiny synthetic data set and one batch per training loop, so
  every notebook runs in seconds in CI;
* ``fast``: MovieLens-100k on a laptop CPU, a few minutes per notebook;
* ``full``: every setting at its paper-scale value, meant for a GPU.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vidrec_lab.constants import DEFAULT_SEED, ENV_HOME

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Profile:
    """Sizes and training budgets for one run profile."""

    name: str
    dataset: str  # "synthetic" keeps smoke runs offline and fast; "ml-100k" is the real default
    synthetic_users: int  # synthetic data size when dataset == "synthetic"
    synthetic_items: int
    max_epochs: int  # upper bound; early stopping may end sooner
    recommender_epochs: int  # upper bound for the two-tower recommender, which needs more epochs than the classifiers
    fast_dev_run: bool  # Lightning's one-batch-per-loop check, used by smoke runs
    encoder_batch_size: int  # texts per forward pass of the text encoder
    encoder_max_length: int  # tokens kept per text; titles and tags fit in 64
    max_items_to_encode: int | None  # None encodes the whole catalog

    def to_dict(self) -> dict:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        dataset="synthetic",
        synthetic_users=60,
        synthetic_items=80,
        max_epochs=1,
        recommender_epochs=1,
        fast_dev_run=True,
        encoder_batch_size=32,
        encoder_max_length=32,
        max_items_to_encode=80,
    ),
    "fast": Profile(
        name="fast",
        dataset="ml-100k",
        synthetic_users=1000,
        synthetic_items=1500,
        max_epochs=20,
        recommender_epochs=60,
        fast_dev_run=False,
        encoder_batch_size=64,
        encoder_max_length=64,
        max_items_to_encode=None,
    ),
    "full": Profile(
        name="full",
        dataset="ml-100k",
        synthetic_users=5000,
        synthetic_items=5000,
        max_epochs=100,
        recommender_epochs=200,
        fast_dev_run=False,
        encoder_batch_size=256,
        encoder_max_length=128,
        max_items_to_encode=None,
    ),
}


def get_profile(name: str | Profile) -> Profile:
    """Return the :class:`Profile` called ``name`` (``smoke``, ``fast`` or ``full``)."""
    if isinstance(name, Profile):
        return name
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}; got {name!r}")
    return PROFILES[name]


def seed_everything(seed: int = DEFAULT_SEED, *, deterministic_torch: bool = True) -> int:
    """Seed Python, NumPy and (when installed) PyTorch, and return the seed.

    With ``deterministic_torch`` PyTorch is asked for deterministic kernels
    where they exist (``warn_only`` so an op without one warns instead of
    failing). Code in this package draws from its own
    ``numpy.random.default_rng(seed)`` and does not rely on the global state
    set here, which is for user code in notebooks.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch
    except ImportError:
        return seed
    torch.manual_seed(seed)
    if deterministic_torch:
        torch.use_deterministic_algorithms(True, warn_only=True)
    return seed


def project_home() -> Path:
    """Return the folder that holds ``outputs/``, ``figures/`` and ``data/``.

    Order: the ``VIDREC_LAB_HOME`` environment variable; else the nearest
    folder at or above the working directory that contains
    ``vidrec_lab/__init__.py`` (a checkout, also when a notebook runs from
    ``notebooks/``); else the working directory.
    """
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser().resolve()
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if (folder / "vidrec_lab" / "__init__.py").is_file():
            return folder
    return cwd


def outputs_dir(*parts: str) -> Path:
    """Return ``<home>/outputs/<parts...>``, created if missing."""
    path = project_home().joinpath("outputs", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir() -> Path:
    """Return ``<home>/figures``, created if missing."""
    path = project_home() / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Return ``<home>/data/cache`` (feature caches), created if missing."""
    path = project_home() / "data" / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def torch_threads(n: int | None = None) -> int:
    """Set and return PyTorch's intra-op thread count (default: all visible cores)."""
    import torch

    if n is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(int(n))
    return int(n)
