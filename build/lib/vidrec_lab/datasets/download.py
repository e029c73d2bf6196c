"""Download archives, extract them safely and check SHA-256 sums.

Downloads stream into a temporary file beside the target, with a tqdm
progress bar, and are renamed into place only when complete. Archives are
extracted into a temporary folder beside the target folder and renamed into
place, so an interrupted run leaves either nothing or the complete data set.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Mapping

from tqdm.auto import tqdm

from vidrec_lab.io import atomic_path
from vidrec_lab.tables import DataError

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 1 << 16
# Digests of files already hashed in this process, keyed by (path, size, mtime in ns),
# so loading the same data set twice hashes it once.
_DIGEST_CACHE: dict[tuple[str, int, int], str] = {}


class DownloadError(OSError):
    """Raised when a file cannot be downloaded. The message explains how to download it by hand."""


class ChecksumError(DataError):
    """Raised when a downloaded or extracted file does not have its published SHA-256 sum."""


def sha256_file(path: str | os.PathLike) -> str:
    """Return the SHA-256 hex digest of a file, reusing the digest while the file is unchanged.

    The cache lives in this process only and is keyed by the resolved path,
    size and modification time, so an edited file is hashed again.
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    cached = _DIGEST_CACHE.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    _DIGEST_CACHE[key] = value
    return value


def find_mismatches(folder: str | os.PathLike, expected: Mapping[str, str]) -> dict[str, str | None]:
    """Compare files in ``folder`` with their expected SHA-256 sums.

    Args:
        folder (path-like): Folder that contains the files.
        expected (mapping): File name -> expected lowercase hex digest.

    Returns:
        dict: File name -> actual digest (None when the file is missing) for
        every file that does not match; empty when all match.
    """
    folder = Path(folder)
    mismatches: dict[str, str | None] = {}
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file():
            mismatches[name] = None
            continue
        actual = sha256_file(path)
        if actual != digest.lower():
            mismatches[name] = actual
    return mismatches


def describe_mismatches(folder: str | os.PathLike, mismatches: Mapping[str, str | None], expected: Mapping[str, str]) -> str:
    """Return one readable line per mismatching file (name, expected and actual digest)."""
    parts = []
    for name, actual in mismatches.items():
        found = "file missing" if actual is None else f"got {actual}"
        parts.append(f"{Path(folder) / name}: expected SHA-256 {expected[name]}, {found}")
    return "; ".join(parts)


def download_file(
    url: str,
    target: str | os.PathLike,
    *,
    expected_sha256: str | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Stream ``url`` into ``target`` with a progress bar and return the path.

    The bytes go to a temporary file in the target folder, which is renamed
    onto ``target`` only after the whole body arrived (and matched
    ``expected_sha256`` when given).

    Args:
        url (str): http(s) or file URL.
        target (path-like): File to create; its folder is created if missing.
        expected_sha256 (str, optional): Required SHA-256 of the whole file.
        timeout (float): Seconds to wait for the connection and each read.
        progress (bool): Show a tqdm progress bar.

    Returns:
        pathlib.Path: ``target``.

    Raises:
        DownloadError: when the server cannot be reached, returns an HTTP
            error, or sends fewer bytes than announced. The message names the
            URL and the path where the file can be put by hand.
        ChecksumError: when the file arrived but its SHA-256 differs.
    """
    target = Path(target).resolve()
    manual = f"download {url} by hand (for example in a browser) and save it as {target}, then run again"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(f"cannot create folder {target.parent} for {target.name} ({err}); {manual}") from err

    logger.info("downloading %s to %s", url, target)
    digest = hashlib.sha256()
    try:
        with atomic_path(target) as tmp:
            with urllib.request.urlopen(url, timeout=timeout) as response, tmp.open("wb") as out:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                received = 0
                with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=not progress) as bar:
                    for chunk in iter(lambda: response.read(_CHUNK_BYTES), b""):
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                if total is not None and received != total:
                    raise DownloadError(
                        f"download of {url} stopped after {received} of {total} bytes; {manual}"
                    )
            actual = digest.hexdigest()
            if expected_sha256 is not None and actual != expected_sha256.lower():
                raise ChecksumError(
                    f"downloaded {url} has SHA-256 {actual}, expected {expected_sha256}; the file was not kept. "
                    f"Retry later, or {manual}"
                )
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as err:
        detail = err if isinstance(err, urllib.error.HTTPError) else (getattr(err, "reason", None) or err)
        raise DownloadError(f"could not download {url} ({type(err).__name__}: {detail}); {manual}") from err
    except DownloadError:
        raise
    except OSError as err:
        raise DownloadError(f"could not write {target} while downloading {url} ({err}); {manual}") from err

    _DIGEST_CACHE[(str(target), target.stat().st_size, target.stat().st_mtime_ns)] = actual
    logger.info("downloaded %s (%d bytes, SHA-256 %s)", target, received, actual)
    return target


def _check_members(archive: zipfile.ZipFile, archive_path: Path, dest: Path) -> None:
    """Reject archive members whose path would land outside ``dest`` (absolute or ``..``)."""
    root = dest.resolve()
    for member in archive.namelist():
        resolved = (root / member).resolve()
        if resolved != root and root not in resolved.parents:
            raise DataError(
                f"{archive_path}: member {member!r} would be written outside the extraction folder; "
                "the archive is unsafe and was not extracted"
            )


def extract_zip(
    archive: str | os.PathLike,
    *,
    folder_name: str,
    marker: str,
    expected_sha256: Mapping[str, str] | None = None,
) -> Path:
    """Extract a data set archive into ``<archive folder>/<folder_name>`` and return that folder.

    Archives such as ``ml-100k.zip`` keep their files under one top folder
    (``ml-100k/u.data``); archives with the files at the top level work too.
    The content goes to a temporary folder beside the target and is renamed
    into place, so the target is either absent or complete.

    Args:
        archive (path-like): The ``.zip`` file.
        folder_name (str): Name of the folder to create beside the archive.
        marker (str): A file the data set must contain (``"u.data"``), used to
            find the data set folder inside the archive.
        expected_sha256 (mapping, optional): File name -> SHA-256 that the
            extracted files must have; on a mismatch nothing is put in place.

    Returns:
        pathlib.Path: The extracted data set folder.

    Raises:
        DataError: when the archive is not a valid zip file, contains unsafe
            paths or lacks ``marker``.
        ChecksumError: when an extracted file differs from ``expected_sha256``.
    """
    archive = Path(archive).resolve()
    target = archive.parent / folder_name
    if (target / marker).is_file():
        return target

    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder_name}.", suffix=".extracting", dir=archive.parent))
    except OSError as err:
        raise OSError(
            f"cannot extract {archive}: no temporary folder can be created in {archive.parent} ({err}); "
            f"extract the archive by hand so that {target / marker} exists"
        ) from err
    try:
        try:
            with zipfile.ZipFile(archive) as handle:
                _check_members(handle, archive, tmp)
                handle.extractall(tmp)
        except zipfile.BadZipFile as err:
            raise DataError(
                f"{archive} is not a valid zip archive ({err}); delete it and download it again"
            ) from err

        found = [p.parent for p in tmp.rglob(marker) if p.is_file()]
        if not found:
            raise DataError(f"{archive} does not contain {marker}; is it the right archive?")
        source = min(found, key=lambda p: len(p.parts))
        if expected_sha256:
            mismatches = find_mismatches(source, expected_sha256)
            if mismatches:
                details = describe_mismatches(archive.name, mismatches, expected_sha256)
                raise ChecksumError(
                    f"{archive}: extracted files differ from the published ones ({details}); "
                    f"the archive was not extracted. Delete {archive} and run again to download a fresh "
                    "copy, or pass verify=False to use it as is"
                )
        if (target / marker).is_file():
            # Another process extracted the same archive meanwhile; keep its copy.
            return target
        if target.exists():
            # A folder without the marker, left by a hand-made copy.
            raise DataError(
                f"{target} exists but lacks {marker}; remove it so {archive.name} can be extracted there"
            )
        os.replace(source, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("extracted %s to %s", archive, target)
    return target
