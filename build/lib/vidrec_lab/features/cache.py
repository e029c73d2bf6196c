"""On-disk cache for feature matrices and per-file feature arrays.

Two kinds of entries live under one folder (default
:func:`vidrec_lab.config.cache_dir`):

* **Item matrices** (:meth:`FeatureCache.get_or_compute`): one row per item,
  stored per namespace and per fingerprint of ``key_parts`` (model name and
  revision, preprocessing settings). Each row carries its item key and a
  content hash of the item's input (its text, or its file's hash), so a rerun
  computes only rows that are new or whose input changed.
* **Per-file arrays** (:meth:`FeatureCache.get_or_compute_arrays`): any named
  arrays computed from one input (a video's frame embeddings, an audio file's
  log-mel statistics), keyed by ``key_parts`` plus the input's content hash.

Layout::

    <folder>/<namespace>/<fingerprint>.npz    keys, hashes and matrix
    <folder>/<namespace>/<fingerprint>.json   manifest: format version, key parts,
                                              shape, SHA-256 of the .npz
    <folder>/<namespace>/files/<fingerprint>.npz   per-file arrays

Every file is written with :func:`vidrec_lab.io.atomic_path`, so a crash
leaves the previous entry or none, never half of one. An entry whose manifest
has another format version, whose files do not load, or whose ``.npz`` does
not match the SHA-256 in its manifest is logged and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from vidrec_lab.config import cache_dir
from vidrec_lab.io import atomic_path, atomic_write_json

logger = logging.getLogger(__name__)

# Bump when the layout of the .npz or the manifest changes; older entries are then rebuilt.
CACHE_FORMAT_VERSION = 1

_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_READ_CHUNK = 1 << 20  # 1 MiB per read while hashing files
_VERSION_KEY = "__format_version__"


class CacheEntryError(Exception):
    """Raised internally when a cache entry cannot be used; the entry is then rebuilt."""


def fingerprint(payload: Any) -> str:
    """Return a 16-hex-digit SHA-256 digest of a JSON-serialisable value.

    Dict keys are sorted, so ``{"a": 1, "b": 2}`` and ``{"b": 2, "a": 1}``
    give the same fingerprint.

    Args:
        payload: Nested dicts, lists, strings, numbers, booleans or None.

    Returns:
        str: The digest, 16 lowercase hex characters.

    Raises:
        TypeError: If ``payload`` contains a value JSON cannot represent.
    """
    try:
        text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    except TypeError as exc:
        raise TypeError(
            f"cache key parts must be JSON-serialisable (str, int, float, bool, None, list, dict): {exc}"
        ) from exc
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def hash_text(text: str) -> str:
    """Return the SHA-256 hex digest of a string's UTF-8 bytes (an item hash for text inputs)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hash_file(path: str | os.PathLike) -> str:
    """Return the SHA-256 hex digest of a file's bytes, read in 1 MiB chunks.

    Use it as the item hash of file inputs (videos, audio), so a replaced file
    is recomputed even when its name stays the same.

    Args:
        path (str or os.PathLike): File to hash.

    Returns:
        str: 64 lowercase hex characters.

    Raises:
        FileNotFoundError: If ``path`` is not a file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cannot hash {path}: file not found")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_READ_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class FeatureCache:
    """Feature matrices and per-file arrays stored under one folder.

    Args:
        folder (str or os.PathLike, optional): Root folder of the cache.
            Default: :func:`vidrec_lab.config.cache_dir` (``<home>/data/cache``).

    Attributes:
        folder (pathlib.Path): The root folder.
        last_stats_ (dict): Counts of the latest :meth:`get_or_compute` call:
            ``{"cached": rows read from disk, "computed": rows computed,
            "rebuilt": whether an unusable entry was discarded}``.

    Example::

        cache = FeatureCache()
        matrix = cache.get_or_compute(
            "text", {"model": "all-MiniLM-L6-v2"}, item_ids, [hash_text(t) for t in texts],
            lambda rows: encoder.encode([texts[i] for i in rows]),
        )
    """

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder) if folder is not None else cache_dir()
        self.last_stats_: dict = {}

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.folder)!r})"

    # ------------------------------------------------------------------ item matrices

    def entry_paths(self, namespace: str, key_parts: Mapping[str, Any]) -> tuple[Path, Path]:
        """Return the ``.npz`` and manifest paths of the entry for ``namespace`` and ``key_parts``."""
        folder = self._namespace_folder(namespace)
        stem = fingerprint(dict(key_parts))
        return folder / f"{stem}.npz", folder / f"{stem}.json"

    def get_or_compute(
        self,
        namespace: str,
        key_parts: Mapping[str, Any],
        item_keys: Sequence[str],
        item_hashes: Sequence[str],
        compute_fn: Callable[[list[int]], np.ndarray],
    ) -> np.ndarray:
        """Return one feature row per item, computing only rows missing from the cache.

        A row is reused when the cache entry for (``namespace``, ``key_parts``)
        contains the same item key with the same item hash. Every other row is
        computed by a single call to ``compute_fn`` with the positions (into
        ``item_keys``) of the rows to compute. The merged entry (old rows of
        items not requested now are kept) is then written atomically.

        Args:
            namespace (str): Feature family, also the sub-folder name
                (``"text"``, ``"video"``); letters, digits, ``_``, ``.`` and ``-``.
            key_parts (Mapping): Everything besides the item inputs that
                determines the features: model name and revision,
                preprocessing settings. Must be JSON-serialisable.
            item_keys (sequence of str): Unique item ids (or file paths).
            item_hashes (sequence of str): Content hash of each item's input,
                same length as ``item_keys`` (:func:`hash_text`, :func:`hash_file`).
            compute_fn (callable): Takes a list of positions and returns an
                array with one row per position, in that order.

        Returns:
            numpy.ndarray: Rows in the order of ``item_keys``. With no items,
            an array of shape ``(0, 0)`` (``(0, *row_shape)`` when an entry
            exists).

        Raises:
            ValueError: On a bad namespace, lengths that differ, a duplicate
                item key, or a ``compute_fn`` result with the wrong row count.
        """
        keys = [str(key) for key in item_keys]
        hashes = [str(value) for value in item_hashes]
        if len(keys) != len(hashes):
            raise ValueError(
                f"item_keys and item_hashes must have the same length; got {len(keys)} and {len(hashes)}"
            )
        _check_unique(keys)
        npz_path, manifest_path = self.entry_paths(namespace, key_parts)

        cached_keys, cached_hashes, cached_matrix, rebuilt = self._load_entry(npz_path, manifest_path)
        position = {key: row for row, key in enumerate(cached_keys)}
        hit_rows = np.full(len(keys), -1, dtype=np.int64)
        for i, (key, value) in enumerate(zip(keys, hashes)):
            row = position.get(key)
            if row is not None and cached_hashes[row] == value:
                hit_rows[i] = row
        missing = [int(i) for i in np.flatnonzero(hit_rows < 0)]

        if not keys:
            row_shape = cached_matrix.shape[1:] if cached_matrix is not None else (0,)
            self.last_stats_ = {"cached": 0, "computed": 0, "rebuilt": rebuilt}
            return np.zeros((0, *row_shape), dtype=np.float32)

        if not missing:
            self.last_stats_ = {"cached": len(keys), "computed": 0, "rebuilt": rebuilt}
            logger.info("%s: %d rows from cache %s", namespace, len(keys), npz_path.name)
            return cached_matrix[hit_rows]

        new_rows = _call_compute(compute_fn, missing)
        if cached_matrix is not None and len(cached_keys) and new_rows.shape[1:] != cached_matrix.shape[1:]:
            # The key parts missed a change that alters the row shape, so no cached row can be trusted.
            logger.warning(
                "%s: computed rows have shape %s but cached rows have %s; recomputing all %d rows",
                namespace,
                new_rows.shape[1:],
                cached_matrix.shape[1:],
                len(keys),
            )
            return self._rebuild_all(namespace, key_parts, keys, hashes, compute_fn, npz_path, manifest_path)

        result = np.empty((len(keys), *new_rows.shape[1:]), dtype=new_rows.dtype)
        result[missing] = new_rows
        hits = np.flatnonzero(hit_rows >= 0)
        if hits.size:
            result[hits] = cached_matrix[hit_rows[hits]]

        # Merge: requested items take their new rows, other cached items keep theirs.
        requested = set(keys)
        kept = [row for row, key in enumerate(cached_keys) if key not in requested]
        all_keys = keys + [cached_keys[row] for row in kept]
        all_hashes = hashes + [cached_hashes[row] for row in kept]
        all_rows = result if not kept else np.concatenate([result, cached_matrix[kept].astype(result.dtype)])
        self._write_entry(namespace, key_parts, all_keys, all_hashes, all_rows, npz_path, manifest_path)

        self.last_stats_ = {"cached": int(hits.size), "computed": len(missing), "rebuilt": rebuilt}
        logger.info(
            "%s: %d rows from cache, %d computed, written to %s",
            namespace,
            int(hits.size),
            len(missing),
            npz_path,
        )
        return result

    def _rebuild_all(self, namespace, key_parts, keys, hashes, compute_fn, npz_path, manifest_path) -> np.ndarray:
        result = _call_compute(compute_fn, list(range(len(keys))))
        self._write_entry(namespace, key_parts, keys, hashes, result, npz_path, manifest_path)
        self.last_stats_ = {"cached": 0, "computed": len(keys), "rebuilt": True}
        return result

    def _load_entry(self, npz_path: Path, manifest_path: Path):
        """Return (keys, hashes, matrix, rebuilt); empty when there is no usable entry."""
        if not npz_path.exists() and not manifest_path.exists():
            return [], [], None, False
        try:
            keys, hashes, matrix = _read_entry(npz_path, manifest_path)
        except CacheEntryError as exc:
            logger.warning("feature cache entry %s is unusable and will be rebuilt: %s", npz_path, exc)
            return [], [], None, True
        return keys, hashes, matrix, False

    def _write_entry(self, namespace, key_parts, keys, hashes, matrix, npz_path: Path, manifest_path: Path) -> None:
        with atomic_path(npz_path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(
                    handle,
                    keys=np.asarray(keys, dtype=str),
                    hashes=np.asarray(hashes, dtype=str),
                    matrix=matrix,
                    **{_VERSION_KEY: np.asarray(CACHE_FORMAT_VERSION)},
                )
        manifest = {
            "format_version": CACHE_FORMAT_VERSION,
            "namespace": namespace,
            "key_parts": dict(key_parts),
            "rows": int(matrix.shape[0]),
            "row_shape": list(matrix.shape[1:]),
            "dtype": str(matrix.dtype),
            "npz_sha256": _sha256_of(npz_path),
            "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_json(manifest_path, manifest)

    # ------------------------------------------------------------------ per-file arrays

    def get_or_compute_arrays(
        self,
        namespace: str,
        key_parts: Mapping[str, Any],
        content_hash: str,
        compute_fn: Callable[[], Mapping[str, np.ndarray]],
    ) -> dict[str, np.ndarray]:
        """Return named arrays computed from one input, from disk when present.

        Use this for results whose shape differs from input to input, such as
        per-frame embeddings of one video. The entry is keyed by ``key_parts``
        plus ``content_hash`` (:func:`hash_file` of the input), so a changed
        file gets a new entry.

        Args:
            namespace (str): Feature family, also the sub-folder name.
            key_parts (Mapping): Model, revision and settings (JSON-serialisable).
            content_hash (str): Hash of the input's content.
            compute_fn (callable): Takes no arguments and returns a mapping of
                array names to arrays.

        Returns:
            dict: Array name to :class:`numpy.ndarray`.

        Raises:
            ValueError: On a bad namespace or an array name starting with ``__``.
            TypeError: If ``compute_fn`` does not return a mapping.
        """
        folder = self._namespace_folder(namespace) / "files"
        path = folder / f"{fingerprint({'key_parts': dict(key_parts), 'content': str(content_hash)})}.npz"
        if path.exists():
            try:
                return _read_arrays(path)
            except CacheEntryError as exc:
                logger.warning("feature cache file %s is unusable and will be rebuilt: %s", path, exc)
        arrays = compute_fn()
        if not isinstance(arrays, Mapping):
            raise TypeError(
                f"compute_fn for namespace {namespace!r} must return a dict of arrays; got {type(arrays).__name__}"
            )
        arrays = {str(name): np.asarray(value) for name, value in arrays.items()}
        reserved = [name for name in arrays if name.startswith("__")]
        if reserved:
            raise ValueError(f"array names starting with '__' are reserved by the cache; got {reserved}")
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays, **{_VERSION_KEY: np.asarray(CACHE_FORMAT_VERSION)})
        logger.debug("%s: wrote %s", namespace, path)
        return arrays

    # ------------------------------------------------------------------ housekeeping

    def clear(self, namespace: str | None = None) -> None:
        """Delete one namespace's entries, or every entry when ``namespace`` is None."""
        target = self._namespace_folder(namespace) if namespace is not None else self.folder
        if target.exists():
            shutil.rmtree(target)
            logger.info("cleared feature cache %s", target)

    def _namespace_folder(self, namespace: str) -> Path:
        if not isinstance(namespace, str) or not _NAMESPACE_RE.match(namespace):
            raise ValueError(
                f"cache namespace must start with a letter or digit and contain only letters, digits, "
                f"'_', '.' and '-'; got {namespace!r}"
            )
        return self.folder / namespace


def _check_unique(keys: list[str]) -> None:
    if len(set(keys)) == len(keys):
        return
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise ValueError(f"item key {key!r} appears more than once; cache item keys must be unique")
        seen.add(key)


def _call_compute(compute_fn: Callable[[list[int]], np.ndarray], rows: list[int]) -> np.ndarray:
    values = np.asarray(compute_fn(list(rows)))
    if values.ndim == 0 or values.shape[0] != len(rows):
        raise ValueError(
            f"compute_fn returned an array of shape {values.shape} for {len(rows)} rows; "
            "expected one row per requested position"
        )
    return values


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_READ_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_entry(npz_path: Path, manifest_path: Path) -> tuple[list[str], list[str], np.ndarray]:
    if not manifest_path.is_file():
        raise CacheEntryError(f"manifest {manifest_path.name} is missing")
    if not npz_path.is_file():
        raise CacheEntryError(f"data file {npz_path.name} is missing")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CacheEntryError(f"manifest {manifest_path.name} is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise CacheEntryError(f"manifest {manifest_path.name} is not a JSON object")
    version = manifest.get("format_version")
    if version != CACHE_FORMAT_VERSION:
        raise CacheEntryError(f"format version {version!r}, expected {CACHE_FORMAT_VERSION}")
    if manifest.get("npz_sha256") != _sha256_of(npz_path):
        raise CacheEntryError(f"{npz_path.name} does not match the SHA-256 in its manifest")
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            keys = [str(key) for key in data["keys"]]
            hashes = [str(value) for value in data["hashes"]]
            matrix = data["matrix"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise CacheEntryError(f"{npz_path.name} cannot be read ({exc})") from exc
    if not (len(keys) == len(hashes) == matrix.shape[0]):
        raise CacheEntryError(
            f"{npz_path.name} has mismatched lengths: {len(keys)} keys, {len(hashes)} hashes and {matrix.shape[0]} rows"
        )
    return keys, hashes, matrix


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise CacheEntryError(f"{path.name} cannot be read ({exc})") from exc
    version = arrays.pop(_VERSION_KEY, None)
    if version is None or int(version) != CACHE_FORMAT_VERSION:
        raise CacheEntryError(f"format version {version!r}, expected {CACHE_FORMAT_VERSION}")
    return arrays
