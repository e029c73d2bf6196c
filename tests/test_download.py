"""Downloads through a local http.server on 127.0.0.1, archive extraction and checksums."""

from __future__ import annotations

import functools
import hashlib
import http.server
import re
import socket
import threading
import zipfile
from pathlib import Path

import pytest

from movielens_files import ML100K_FILES, file_sums, write_ml1m, write_ml100k, zip_folder
from vidrec_lab.datasets import ChecksumError, DownloadError, load_movielens_1m, load_movielens_100k, movielens
from vidrec_lab.datasets.download import download_file, extract_zip, sha256_file
from vidrec_lab.tables import DataError


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        pass


class _TruncatingHandler(http.server.BaseHTTPRequestHandler):
    """Announce 1000 bytes, send 10 and close, like a connection that drops mid-download."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format, *args):  # noqa: A002
        pass


def _serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def file_server(tmp_path):
    """Serve ``tmp_path / "served"`` over HTTP on loopback; yield (base URL, folder)."""
    folder = tmp_path / "served"
    folder.mkdir()
    server, thread = _serve(functools.partial(_QuietHandler, directory=str(folder)))
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _served_ml100k(tmp_path: Path, served: Path) -> Path:
    source = write_ml100k(tmp_path / "build" / "ml-100k")
    zip_folder(source, served / "ml-100k.zip", root="ml-100k")
    return source


# ---------------------------------------------------------------------------
# download_file
# ---------------------------------------------------------------------------


def test_sha256_file_known_digest(tmp_path):
    path = tmp_path / "abc.txt"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_sha256_file_rehashes_edited_file(tmp_path):
    path = tmp_path / "data.txt"
    path.write_bytes(b"abc")
    first = sha256_file(path)
    path.write_bytes(b"abcd")
    assert sha256_file(path) == hashlib.sha256(b"abcd").hexdigest()
    assert sha256_file(path) != first


def test_download_file_writes_exact_bytes(file_server, tmp_path):
    url, served = file_server
    payload = bytes(range(256)) * 1000
    (served / "blob.bin").write_bytes(payload)
    target = download_file(f"{url}/blob.bin", tmp_path / "out" / "blob.bin", progress=False)
    assert target.read_bytes() == payload
    assert [p.name for p in target.parent.iterdir()] == ["blob.bin"]


def test_download_file_rejects_wrong_sum(file_server, tmp_path):
    url, served = file_server
    (served / "blob.bin").write_bytes(b"hello")
    target = tmp_path / "out" / "blob.bin"
    with pytest.raises(ChecksumError, match=r"has SHA-256 2cf24dba.*expected 0000.*was not kept"):
        download_file(f"{url}/blob.bin", target, expected_sha256="0" * 64, progress=False)
    assert list(target.parent.iterdir()) == []


def test_download_file_http_error(file_server, tmp_path):
    url, _ = file_server
    target = tmp_path / "out" / "missing.zip"
    with pytest.raises(DownloadError, match=r"HTTP Error 404.*save it as " + re.escape(str(target))):
        download_file(f"{url}/missing.zip", target, progress=False)
    assert list(target.parent.iterdir()) == []


def test_download_file_truncated_body(tmp_path):
    server, thread = _serve(_TruncatingHandler)
    target = tmp_path / "out" / "cut.zip"
    try:
        with pytest.raises(DownloadError, match=r"cut\.zip"):
            download_file(f"http://127.0.0.1:{server.server_address[1]}/cut.zip", target, progress=False)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert list(target.parent.iterdir()) == []


# ---------------------------------------------------------------------------
# extract_zip
# ---------------------------------------------------------------------------


def test_extract_zip_rejects_path_traversal(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("ml-100k/u.data", "1\t1\t5\t1\n")
        handle.writestr("../outside.txt", "x")
    with pytest.raises(DataError, match=r"member '\.\./outside\.txt' would be written outside"):
        extract_zip(archive, folder_name="ml-100k", marker="u.data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.zip"]


def test_extract_zip_rejects_corrupt_archive(tmp_path):
    archive = tmp_path / "ml-100k.zip"
    archive.write_bytes(b"this is not a zip file")
    with pytest.raises(DataError, match=r"ml-100k\.zip is not a valid zip archive"):
        extract_zip(archive, folder_name="ml-100k", marker="u.data")


def test_extract_zip_without_marker(tmp_path):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("readme.txt", "hello")
    with pytest.raises(DataError, match=r"other\.zip does not contain u\.data"):
        extract_zip(archive, folder_name="ml-100k", marker="u.data")


def test_extract_zip_flat_archive(tmp_path):
    archive = tmp_path / "flat.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("u.data", "1\t1\t5\t1\n")
    folder = extract_zip(archive, folder_name="ml-100k", marker="u.data")
    assert folder == tmp_path / "ml-100k"
    assert (folder / "u.data").read_text() == "1\t1\t5\t1\n"


# ---------------------------------------------------------------------------
# Loaders downloading from the local server
# ---------------------------------------------------------------------------


def test_ml100k_download_into_data_raw(file_server, tmp_path, isolated_home):
    url, served = file_server
    _served_ml100k(tmp_path, served)
    dataset = load_movielens_100k(url=f"{url}/ml-100k.zip", verify=False)
    raw = isolated_home / "data" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == ["ml-100k", "ml-100k.zip"]
    assert dataset.source == str(raw / "ml-100k")
    assert dataset.info["downloaded"] is True
    assert len(dataset.interactions) == 5
    # The second call finds the extracted folder and downloads nothing.
    second = load_movielens_100k(url=f"http://127.0.0.1:{_closed_port()}/ml-100k.zip", verify=False)
    assert second.info["downloaded"] is False


def test_ml100k_download_verified(file_server, tmp_path, isolated_home, monkeypatch):
    url, served = file_server
    source = _served_ml100k(tmp_path, served)
    monkeypatch.setattr(movielens, "ML_100K_SHA256", file_sums(source, ML100K_FILES))
    dataset = load_movielens_100k(url=f"{url}/ml-100k.zip")
    assert dataset.info["checksums"] == "verified"


def test_ml100k_download_wrong_files_rejected(file_server, tmp_path, isolated_home):
    url, served = file_server
    _served_ml100k(tmp_path, served)
    with pytest.raises(ChecksumError, match=r"u\.data: expected SHA-256 06416e59.*was not extracted"):
        load_movielens_100k(url=f"{url}/ml-100k.zip")
    assert not (isolated_home / "data" / "raw" / "ml-100k").exists()


def test_ml100k_download_into_env_folder(file_server, tmp_path, isolated_home, monkeypatch):
    url, served = file_server
    _served_ml100k(tmp_path, served)
    env = tmp_path / "my-data"
    monkeypatch.setenv("VIDREC_LAB_DATA", str(env))
    dataset = load_movielens_100k(url=f"{url}/ml-100k.zip", verify=False)
    assert dataset.source == str(env / "ml-100k")
    assert not (isolated_home / "data").exists()


def test_ml100k_offline_message_names_manual_path(isolated_home):
    url = f"http://127.0.0.1:{_closed_port()}/ml-100k.zip"
    expected = isolated_home / "data" / "raw" / "ml-100k.zip"
    with pytest.raises(DownloadError, match=rf"could not download {re.escape(url)} .*save it as {re.escape(str(expected))}"):
        load_movielens_100k(url=url)
    assert not (isolated_home / "data" / "raw" / "ml-100k.zip").exists()


def test_ml1m_download_checks_archive_sum(file_server, tmp_path, isolated_home, monkeypatch):
    url, served = file_server
    source = write_ml1m(tmp_path / "build" / "ml-1m")
    archive = zip_folder(source, served / "ml-1m.zip", root="ml-1m")
    with pytest.raises(ChecksumError, match=r"expected a6898adb"):
        load_movielens_1m(url=f"{url}/ml-1m.zip")
    assert not (isolated_home / "data" / "raw" / "ml-1m.zip").exists()

    monkeypatch.setitem(movielens.ARCHIVE_SHA256, "ml-1m.zip", sha256_file(archive))
    dataset = load_movielens_1m(url=f"{url}/ml-1m.zip")
    assert dataset.info["checksums"] == "verified archive"
    assert len(dataset.items) == 3


@pytest.mark.realdata
def test_real_ml100k_zip_downloaded_and_verified(shared_datasets, file_server, tmp_path, isolated_home):
    real = shared_datasets / "ml-100k"
    if not real.is_dir():
        pytest.skip(f"{real} not found")
    url, served = file_server
    # The archive lives in the test's temporary folder only; storing without compression keeps it fast.
    zip_folder(real, served / "ml-100k.zip", root="ml-100k", compression=zipfile.ZIP_STORED)
    dataset = load_movielens_100k(url=f"{url}/ml-100k.zip")
    assert dataset.info["checksums"] == "verified"
    assert len(dataset.items) == 1682
