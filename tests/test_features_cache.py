"""Tests for vidrec_lab.features.cache: hits, partial recomputes, rebuilds, atomic writes."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pytest

from vidrec_lab.features.cache import (
    CACHE_FORMAT_VERSION,
    FeatureCache,
    fingerprint,
    hash_file,
    hash_text,
)

KEY = {"model": "tiny", "revision": "abc", "settings": {"max_length": 32}}


class RowComputer:
    """compute_fn that records every call; row i of item k is [value(k), value(k) + 1]."""

    def __init__(self, keys, values):
        self.keys = keys
        self.values = values
        self.calls: list[list[int]] = []

    def __call__(self, rows):
        self.calls.append(list(rows))
        return np.array([[self.values[self.keys[r]], self.values[self.keys[r]] + 1.0] for r in rows], dtype=np.float32)


def expected_rows(keys, values):
    return np.array([[values[k], values[k] + 1.0] for k in keys], dtype=np.float32)


def run(cache, keys, values, hashes=None, key_parts=KEY):
    hashes = hashes if hashes is not None else [f"h{values[k]}" for k in keys]
    computer = RowComputer(keys, values)
    matrix = cache.get_or_compute("text", key_parts, keys, hashes, computer)
    return matrix, computer


def test_first_call_computes_all_rows(tmp_path):
    keys = ["a", "b", "c"]
    values = {"a": 1.0, "b": 2.0, "c": 3.0}
    matrix, computer = run(FeatureCache(tmp_path), keys, values)
    assert computer.calls == [[0, 1, 2]]
    np.testing.assert_array_equal(matrix, expected_rows(keys, values))
    assert matrix.dtype == np.float32


def test_rerun_loads_from_disk(tmp_path):
    keys = ["a", "b", "c"]
    values = {"a": 1.0, "b": 2.0, "c": 3.0}
    run(FeatureCache(tmp_path), keys, values)
    cache = FeatureCache(tmp_path)
    matrix, computer = run(cache, keys, values)
    assert computer.calls == []
    np.testing.assert_array_equal(matrix, expected_rows(keys, values))
    assert cache.last_stats_ == {"cached": 3, "computed": 0, "rebuilt": False}


def test_changed_and_new_items_recompute_only_those(tmp_path):
    cache = FeatureCache(tmp_path)
    run(cache, ["a", "b", "c"], {"a": 1.0, "b": 2.0, "c": 3.0})
    # "b" changes content, "d" is new, and the request order differs from the stored order.
    keys = ["c", "b", "d", "a"]
    values = {"a": 1.0, "b": 20.0, "c": 3.0, "d": 4.0}
    matrix, computer = run(cache, keys, values)
    assert computer.calls == [[1, 2]]
    np.testing.assert_array_equal(matrix, expected_rows(keys, values))
    assert cache.last_stats_["computed"] == 2
    assert cache.last_stats_["cached"] == 2


def test_items_not_requested_stay_cached(tmp_path):
    cache = FeatureCache(tmp_path)
    run(cache, ["a", "b"], {"a": 1.0, "b": 2.0})
    run(cache, ["c"], {"c": 3.0})
    matrix, computer = run(cache, ["a", "b", "c"], {"a": 1.0, "b": 2.0, "c": 3.0})
    assert computer.calls == []
    np.testing.assert_array_equal(matrix[:, 0], [1.0, 2.0, 3.0])


def test_other_key_parts_use_another_entry(tmp_path):
    cache = FeatureCache(tmp_path)
    values = {"a": 1.0}
    run(cache, ["a"], values)
    _, computer = run(cache, ["a"], values, key_parts={**KEY, "revision": "def"})
    assert computer.calls == [[0]]
    _, computer = run(cache, ["a"], values)
    assert computer.calls == []


def test_manifest_records_entry(tmp_path):
    cache = FeatureCache(tmp_path)
    run(cache, ["a", "b"], {"a": 1.0, "b": 2.0})
    npz_path, manifest_path = cache.entry_paths("text", KEY)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    assert manifest["format_version"] == CACHE_FORMAT_VERSION
    assert manifest["key_parts"] == KEY
    assert manifest["rows"] == 2
    assert manifest["row_shape"] == [2]
    assert manifest["npz_sha256"] == hashlib.sha256(npz_path.read_bytes()).hexdigest()
    assert npz_path.parent == tmp_path / "text"


def test_chinese_item_keys_round_trip(tmp_path):
    keys = ["视频-1", "搞笑", "a"]
    values = {"视频-1": 1.0, "搞笑": 2.0, "a": 3.0}
    run(FeatureCache(tmp_path), keys, values)
    matrix, computer = run(FeatureCache(tmp_path), keys, values)
    assert computer.calls == []
    np.testing.assert_array_equal(matrix, expected_rows(keys, values))


def test_version_mismatch_rebuilds(tmp_path, caplog):
    cache = FeatureCache(tmp_path)
    keys, values = ["a", "b"], {"a": 1.0, "b": 2.0}
    run(cache, keys, values)
    _, manifest_path = cache.entry_paths("text", KEY)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["format_version"] = CACHE_FORMAT_VERSION + 1
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")

    with caplog.at_level(logging.WARNING, logger="vidrec_lab.features.cache"):
        matrix, computer = run(cache, keys, values)
    assert computer.calls == [[0, 1]]
    assert "format version" in caplog.text
    assert cache.last_stats_["rebuilt"] is True
    np.testing.assert_array_equal(matrix, expected_rows(keys, values))
    assert json.loads(manifest_path.read_text(encoding="utf-8"))["format_version"] == CACHE_FORMAT_VERSION


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda npz, manifest: npz.write_bytes(b"not a zip file"), id="npz-garbage"),
        pytest.param(lambda npz, manifest: npz.write_bytes(npz.read_bytes()[:50]), id="npz-truncated"),
        pytest.param(lambda npz, manifest: manifest.write_text("{ not json", encoding="utf-8"), id="manifest-bad-json"),
        pytest.param(lambda npz, manifest: manifest.unlink(), id="manifest-missing"),
        pytest.param(lambda npz, manifest: npz.unlink(), id="npz-missing"),
    ],
)
def test_corrupt_entry_rebuilds(tmp_path, caplog, damage):
    cache = FeatureCache(tmp_path)
    keys, values = ["a", "b"], {"a": 1.0, "b": 2.0}
    run(cache, keys, values)
    damage(*cache.entry_paths("text", KEY))

    with caplog.at_level(logging.WARNING, logger="vidrec_lab.features.cache"):
        matrix, computer = run(cache, keys, values)
    assert computer.calls == [[0, 1]]
    assert "unusable" in caplog.text
    np.testing.assert_array_equal(matrix, expected_rows(keys, values))
    _, computer = run(cache, keys, values)
    assert computer.calls == []


def test_npz_from_another_write_is_detected(tmp_path):
    # A crash between writing the .npz and its manifest leaves a pair that does not match.
    cache = FeatureCache(tmp_path)
    run(cache, ["a"], {"a": 1.0})
    npz_path, manifest_path = cache.entry_paths("text", KEY)
    old_manifest = manifest_path.read_text(encoding="utf-8")
    run(cache, ["a"], {"a": 5.0})
    manifest_path.write_text(old_manifest, encoding="utf-8")
    matrix, computer = run(cache, ["a"], {"a": 5.0})
    assert computer.calls == [[0]]
    assert matrix[0, 0] == 5.0


def test_failing_compute_leaves_no_file(tmp_path):
    cache = FeatureCache(tmp_path)

    def fail(rows):
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        cache.get_or_compute("text", KEY, ["a", "b"], ["h1", "h2"], fail)
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert written == []


def test_failing_compute_keeps_old_entry(tmp_path):
    cache = FeatureCache(tmp_path)
    run(cache, ["a"], {"a": 1.0})
    npz_path, manifest_path = cache.entry_paths("text", KEY)
    before = (npz_path.read_bytes(), manifest_path.read_bytes())

    def fail(rows):
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError):
        cache.get_or_compute("text", KEY, ["a", "b"], ["h1.0", "h2"], fail)
    assert (npz_path.read_bytes(), manifest_path.read_bytes()) == before
    assert sorted(path.name for path in npz_path.parent.iterdir()) == sorted([npz_path.name, manifest_path.name])


def test_wrong_row_count_raises(tmp_path):
    cache = FeatureCache(tmp_path)
    with pytest.raises(ValueError, match=r"shape \(1, 2\) for 2 rows"):
        cache.get_or_compute("text", KEY, ["a", "b"], ["h1", "h2"], lambda rows: np.zeros((1, 2)))
    assert not any(path.is_file() for path in tmp_path.rglob("*"))


def test_changed_row_shape_recomputes_all(tmp_path, caplog):
    cache = FeatureCache(tmp_path)
    cache.get_or_compute("text", KEY, ["a", "b"], ["h1", "h2"], lambda rows: np.zeros((len(rows), 2)))
    calls = []

    def wider(rows):
        calls.append(list(rows))
        return np.ones((len(rows), 3))

    with caplog.at_level(logging.WARNING, logger="vidrec_lab.features.cache"):
        matrix = cache.get_or_compute("text", KEY, ["a", "b"], ["h1", "h9"], wider)
    assert calls == [[1], [0, 1]]
    assert matrix.shape == (2, 3)
    assert "recomputing all 2 rows" in caplog.text


def test_duplicate_keys_raise(tmp_path):
    with pytest.raises(ValueError, match="item key 'b' appears more than once"):
        FeatureCache(tmp_path).get_or_compute("text", KEY, ["a", "b", "b"], ["1", "2", "3"], lambda rows: None)


def test_length_mismatch_raises(tmp_path):
    with pytest.raises(ValueError, match="same length; got 2 and 1"):
        FeatureCache(tmp_path).get_or_compute("text", KEY, ["a", "b"], ["1"], lambda rows: None)


@pytest.mark.parametrize("namespace", ["", "../up", "a/b", ".hidden", 3])
def test_bad_namespace_raises(tmp_path, namespace):
    with pytest.raises(ValueError, match="cache namespace"):
        FeatureCache(tmp_path).get_or_compute(namespace, KEY, ["a"], ["1"], lambda rows: np.zeros((1, 1)))


def test_no_items_returns_empty(tmp_path):
    cache = FeatureCache(tmp_path)
    assert cache.get_or_compute("text", KEY, [], [], lambda rows: None).shape == (0, 0)
    run(cache, ["a"], {"a": 1.0})
    assert cache.get_or_compute("text", KEY, [], [], lambda rows: None).shape == (0, 2)


def test_clear_removes_namespace(tmp_path):
    cache = FeatureCache(tmp_path)
    run(cache, ["a"], {"a": 1.0})
    cache.clear("text")
    _, computer = run(cache, ["a"], {"a": 1.0})
    assert computer.calls == [[0]]


def test_default_folder_is_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDREC_LAB_HOME", str(tmp_path))
    assert FeatureCache().folder == tmp_path / "data" / "cache"


# ---------------------------------------------------------------------------- per-file arrays


def test_arrays_computed_once_per_content(tmp_path):
    cache = FeatureCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"frames": np.arange(6, dtype=np.float32).reshape(3, 2), "fps": np.asarray(25.0)}

    first = cache.get_or_compute_arrays("video", KEY, "hash-1", compute)
    second = FeatureCache(tmp_path).get_or_compute_arrays("video", KEY, "hash-1", compute)
    assert len(calls) == 1
    np.testing.assert_array_equal(second["frames"], first["frames"])
    assert float(second["fps"]) == 25.0
    assert sorted(second) == ["fps", "frames"]

    cache.get_or_compute_arrays("video", KEY, "hash-2", compute)
    assert len(calls) == 2


def test_corrupt_arrays_file_rebuilds(tmp_path, caplog):
    cache = FeatureCache(tmp_path)
    cache.get_or_compute_arrays("audio", KEY, "h", lambda: {"mfcc": np.ones(3)})
    (path,) = (tmp_path / "audio" / "files").iterdir()
    path.write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="vidrec_lab.features.cache"):
        arrays = cache.get_or_compute_arrays("audio", KEY, "h", lambda: {"mfcc": np.full(3, 2.0)})
    assert "unusable" in caplog.text
    np.testing.assert_array_equal(arrays["mfcc"], [2.0, 2.0, 2.0])


def test_arrays_compute_must_return_mapping(tmp_path):
    with pytest.raises(TypeError, match="must return a dict of arrays; got ndarray"):
        FeatureCache(tmp_path).get_or_compute_arrays("video", KEY, "h", lambda: np.ones(3))


def test_arrays_reserved_name_raises(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        FeatureCache(tmp_path).get_or_compute_arrays("video", KEY, "h", lambda: {"__format_version__": np.ones(1)})


# ---------------------------------------------------------------------------- hashes


def test_hash_file_matches_sha256(tmp_path):
    path = tmp_path / "clip.bin"
    path.write_bytes(b"abc")
    assert hash_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_hash_file_missing_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.mp4: file not found"):
        hash_file(tmp_path / "nothere.mp4")


def test_hash_text_is_utf8_sha256():
    assert hash_text("中文") == hashlib.sha256("中文".encode("utf-8")).hexdigest()


def test_fingerprint_ignores_key_order():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert len(fingerprint({"a": 1})) == 16


def test_fingerprint_rejects_objects():
    with pytest.raises(TypeError, match="JSON-serialisable"):
        fingerprint({"model": object()})
