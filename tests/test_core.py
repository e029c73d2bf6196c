"""Tests of the shared tables, configuration and atomic writes."""

import json

import numpy as np
import pandas as pd
import pytest

from vidrec_lab import config, io
from vidrec_lab.tables import DataError, Dataset, MissingColumnsError, require_columns, validate_interactions, validate_items


def _interactions(**overrides):
    data = {"user_id": [1, 1, 2], "item_id": ["a", "b", "a"], "timestamp": [30, 10, 20], "event": "view", "value": [1.0, 0.5, 1.0]}
    data.update(overrides)
    return pd.DataFrame(data)


def test_validate_interactions_types_and_order():
    out = validate_interactions(_interactions())
    assert out["timestamp"].tolist() == [10, 20, 30]
    assert out["user_id"].tolist() == ["1", "2", "1"]
    assert out["timestamp"].dtype == np.int64
    assert out["value"].dtype == np.float64


def test_validate_interactions_names_bad_value():
    with pytest.raises(DataError, match=r"ratings.csv: column 'value' at row 1 holds 'five'; expected a number"):
        validate_interactions(_interactions(value=[1.0, "five", 2.0]), where="ratings.csv")


def test_validate_interactions_names_unknown_item():
    items = pd.DataFrame({"item_id": ["a"]})
    with pytest.raises(DataError, match=r"item_id 'b' at row 1 is not in the item table"):
        validate_interactions(_interactions(), items=items)


def test_validate_interactions_drops_duplicates_with_warning(caplog):
    frame = pd.concat([_interactions(), _interactions().iloc[[0]]])
    with caplog.at_level("WARNING"):
        out = validate_interactions(frame)
    assert len(out) == 3
    assert "dropped 1 duplicate" in caplog.text


def test_validate_items_fills_optional_columns():
    items = validate_items(pd.DataFrame({"item_id": [3, 4], "title": ["猫", None]}))
    assert items["item_id"].tolist() == ["3", "4"]
    assert items["title"].tolist() == ["猫", ""]
    assert items["tags"].tolist() == [[], []]
    assert items["video_path"].tolist() == [None, None]


def test_validate_items_rejects_duplicates_and_bad_lists():
    with pytest.raises(DataError, match="item_id '1' appears more than once"):
        validate_items(pd.DataFrame({"item_id": ["1", "1"]}))
    with pytest.raises(DataError, match="column 'tags' at row 0 holds 'comic'; expected a list of strings"):
        validate_items(pd.DataFrame({"item_id": ["1"], "tags": ["comic"]}))


def test_require_columns_names_missing_and_found():
    with pytest.raises(MissingColumnsError, match=r"fit\(train\): missing column\(s\) \['item_id'\]; found \['user_id'\]"):
        require_columns(pd.DataFrame({"user_id": [1]}), ["user_id", "item_id"], where="fit(train)")


def test_dataset_summary_and_fingerprint():
    items = pd.DataFrame({"item_id": ["a", "b"]})
    users = pd.DataFrame({"user_id": ["1", "2"]})
    dataset = Dataset("tiny", items, users, _interactions())
    assert dataset.summary()["interactions"] == 3
    assert dataset.summary()["density"] == pytest.approx(0.75)
    assert dataset.fingerprint() == Dataset("tiny", items, users, _interactions()).fingerprint()


def test_get_profile_rejects_unknown():
    assert config.get_profile("smoke").dataset == "synthetic"
    with pytest.raises(ValueError, match=r"profile must be one of \['fast', 'full', 'smoke'\]; got 'quick'"):
        config.get_profile("quick")


def test_seed_everything_repeats_draws():
    config.seed_everything(5)
    first = np.random.rand(3)
    config.seed_everything(5)
    np.testing.assert_array_equal(first, np.random.rand(3))
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        config.seed_everything(-1)


def test_project_home_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDREC_LAB_HOME", str(tmp_path))
    assert config.project_home() == tmp_path.resolve()
    assert config.outputs_dir("metrics") == tmp_path.resolve() / "outputs" / "metrics"


def test_write_metrics_round_trip(tmp_path):
    table = pd.DataFrame({"model": ["EASE"], "value": [np.float32(0.25)]})
    path = io.write_metrics("demo", table, params={"seed": np.int64(3)}, folder=tmp_path)
    payload = json.loads(path.read_text(encoding="utf-8"))
    assert payload["metrics"] == [{"model": "EASE", "value": 0.25}]
    assert payload["params"] == {"seed": 3}
    assert io.read_metrics(path)["name"] == "demo"


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "result.json"
    io.atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
