"""Where the benchmark scripts look for MovieLens-100k when ``--data`` is not given."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_folder() -> Path:
    """Return ``$VIDREC_LAB_SHARED_DATASETS/ml-100k``, else ``ml-100k`` in the ``shared/datasets`` folder beside the checkout."""
    env = os.environ.get("VIDREC_LAB_SHARED_DATASETS")
    base = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
    return base / "ml-100k"
