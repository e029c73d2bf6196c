"""Small helpers for the first cells of every notebook: versions, seeds, style and logging."""

from __future__ import annotations

import logging
import sys

import pandas as pd

from vidrec_lab.config import Profile, get_profile, seed_everything


def versions() -> pd.Series:
    """Return the versions of the packages that shape results, for the notebook's first cell."""
    from vidrec_lab.runner import package_versions

    shown = package_versions()
    return pd.Series({name: shown[name] for name in ("python", "vidrec_lab", "torch", "transformers", "lightning", "numpy", "pandas")})


def start(profile: str | Profile, seed: int, *, threads: int | None = None) -> Profile:
    """Seed everything, apply the figure style, route package logs to the notebook, and return the profile.

    Args:
        profile (str or Profile): ``smoke``, ``fast`` or ``full``.
        seed (int): Seed for Python, NumPy and PyTorch.
        threads (int, optional): PyTorch threads; default all available cores.
    """
    from vidrec_lab.config import torch_threads
    from vidrec_lab.viz import set_style

    chosen = get_profile(profile)
    seed_everything(seed)
    set_style()
    package_logger = logging.getLogger("vidrec_lab")
    if not any(getattr(h, "_vidrec_lab", False) for h in package_logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._vidrec_lab = True
        package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO)
    used = torch_threads(threads)
    package_logger.info("profile %s, seed %d, %d torch threads", chosen.name, seed, used)
    return chosen
