"""Data set loaders that return validated :class:`~vidrec_lab.tables.Dataset` tables.

* :func:`load_movielens_100k`, :func:`load_movielens_1m`,
  :func:`load_movielens_latest_small`: MovieLens ratings, from a folder, the
  official zip or a checksum-verified download;
* :func:`load_microlens`: MicroLens-50k micro-video captions, hashtags,
  videos and (when present) views;
* :func:`make_synthetic`: a seeded micro-video platform with known user
  preferences (:func:`true_affinity`).

:func:`load_dataset` picks one of them by name and :func:`load_for_profile`
picks the one a run profile uses.
"""

from __future__ import annotations

import os

from vidrec_lab.config import Profile, get_profile
from vidrec_lab.constants import DEFAULT_SEED
from vidrec_lab.datasets._paths import DatasetNotFoundError
from vidrec_lab.datasets.download import ChecksumError, DownloadError
from vidrec_lab.datasets.microlens import load_microlens, split_caption
from vidrec_lab.datasets.movielens import (
    load_movielens_1m,
    load_movielens_100k,
    load_movielens_latest_small,
    split_title_year,
)
from vidrec_lab.datasets.synthetic import make_synthetic, true_affinity
from vidrec_lab.tables import Dataset

__all__ = [
    "DATASET_NAMES",
    "ChecksumError",
    "DatasetNotFoundError",
    "DownloadError",
    "load_dataset",
    "load_for_profile",
    "load_microlens",
    "load_movielens_100k",
    "load_movielens_1m",
    "load_movielens_latest_small",
    "make_synthetic",
    "split_caption",
    "split_title_year",
    "true_affinity",
]

_LOADERS = {
    "ml-100k": load_movielens_100k,
    "ml-1m": load_movielens_1m,
    "ml-latest-small": load_movielens_latest_small,
    "microlens": load_microlens,
}
DATASET_NAMES = (*_LOADERS, "synthetic")


def load_dataset(name: str, path: str | os.PathLike | None = None, **kwargs) -> Dataset:
    """Load a data set by name.

    Args:
        name (str): One of ``DATASET_NAMES``: ``"ml-100k"``, ``"ml-1m"``,
            ``"ml-latest-small"``, ``"microlens"``, ``"synthetic"``.
        path (path-like, optional): Folder or archive for the file-based data
            sets; must be None for ``"synthetic"``.
        **kwargs: Passed to the loader (``download=``, ``verify=``,
            ``max_items=``, or the :func:`make_synthetic` arguments).

    Returns:
        Dataset: The validated tables.

    Raises:
        ValueError: on an unknown name (the message lists the allowed names)
            or a ``path`` given for ``"synthetic"``.
    """
    if name == "synthetic":
        if path is not None:
            raise ValueError(f"load_dataset('synthetic') generates its data and takes no path; got path={path!r}")
        return make_synthetic(**kwargs)
    if name not in _LOADERS:
        raise ValueError(f"load_dataset: name must be one of {list(DATASET_NAMES)}; got {name!r}")
    return _LOADERS[name](path, **kwargs)


def load_for_profile(profile: str | Profile, path: str | os.PathLike | None = None, seed: int = DEFAULT_SEED) -> Dataset:
    """Load the data set a notebook uses under a run profile.

    ``smoke`` generates the synthetic platform at the profile's size
    (``synthetic_users`` x ``synthetic_items``) with ``seed``. ``fast`` and
    ``full`` load the profile's real data set (ml-100k) from ``path`` or the
    standard places, and download it when it is missing.

    Args:
        profile (str or Profile): ``"smoke"``, ``"fast"``, ``"full"`` or a Profile.
        path (path-like, optional): Folder or archive of the real data set;
            ignored when the profile uses synthetic data.
        seed (int): Seed for the synthetic data set; unused for real data.

    Returns:
        Dataset: The profile's data set.
    """
    profile = get_profile(profile)
    if profile.dataset == "synthetic":
        return make_synthetic(n_users=profile.synthetic_users, n_items=profile.synthetic_items, seed=seed)
    return load_dataset(profile.dataset, path)
