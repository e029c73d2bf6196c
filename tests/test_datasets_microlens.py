"""MicroLens loader on tiny folders written here, plus the real sample when present."""

from __future__ import annotations

import logging
import re

import pytest

from vidrec_lab.constants import COL_COVER_PATH, COL_ITEM, COL_TAGS, COL_TITLE, COL_USER, COL_VIDEO_PATH, EVENT_VIEW
from vidrec_lab.datasets import DatasetNotFoundError, load_dataset, load_microlens, split_caption
from vidrec_lab.tables import DataError

TITLES = (
    "item,title\n"
    '1,"Gu long song gaga bad, even three hundred years old are not let go. # comic # Two Yuan # My destiny villain"\n'
    "2,今天好开心 #搞笑 #美食\n"
    "3,#Swagger Chun Yu:\n"
    "4,no tags here\n"
    '5,"two lines\nof caption #tag"\n'
)


def _write_microlens(folder, *, titles=TITLES, pairs_csv=None, pairs_tsv=None, videos=(), covers=()):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MicroLens-50k_titles.csv").write_text(titles, encoding="utf-8")
    if pairs_csv is not None:
        (folder / "MicroLens-50k_pairs.csv").write_text(pairs_csv, encoding="utf-8")
    if pairs_tsv is not None:
        (folder / "MicroLens-50k_pairs.tsv").write_text(pairs_tsv, encoding="utf-8")
    for item in videos:
        (folder / "videos").mkdir(exist_ok=True)
        (folder / "videos" / f"{item}.mp4").write_bytes(b"not decoded by the loader")
    for item in covers:
        (folder / "covers").mkdir(exist_ok=True)
        (folder / "covers" / f"{item}.jpg").write_bytes(b"\xff\xd8")
    return folder


@pytest.mark.parametrize(
    "caption, expected",
    [
        ("Gu long song. # comic # Two Yuan # My destiny villain", ("Gu long song.", ["comic", "Two Yuan", "My destiny villain"])),
        ("text #tag1 #tag2", ("text", ["tag1", "tag2"])),
        ("今天好开心 #搞笑 #美食", ("今天好开心", ["搞笑", "美食"])),
        ("#搞笑#美食", ("搞笑 美食", ["搞笑", "美食"])),
        ("#amongus# SpaceWerewolf Kill", ("amongus SpaceWerewolf Kill", ["amongus", "SpaceWerewolf Kill"])),
        ("#Swagger Chun Yu:", ("Swagger Chun Yu:", ["Swagger Chun Yu:"])),
        ("no tags here", ("no tags here", [])),
        ("spaces   inside  #a   b ", ("spaces inside", ["a b"])),
        ("", ("", [])),
    ],
)
def test_split_caption(caption, expected):
    assert split_caption(caption) == expected


def test_items_titles_tags_and_media(tmp_path):
    folder = _write_microlens(tmp_path / "microlens", videos=["1", "999"], covers=["2"])
    dataset = load_microlens(folder)
    items = dataset.items.set_index(COL_ITEM)
    assert list(items.index) == ["1", "2", "3", "4", "5"]
    assert items.loc["1", COL_TITLE] == "Gu long song gaga bad, even three hundred years old are not let go."
    assert items.loc["1", COL_TAGS] == ["comic", "Two Yuan", "My destiny villain"]
    assert items.loc["2", COL_TITLE] == "今天好开心"
    assert items.loc["2", COL_TAGS] == ["搞笑", "美食"]
    assert items.loc["3", COL_TITLE] == "Swagger Chun Yu:"
    assert items.loc["4", COL_TAGS] == []
    assert items.loc["5", COL_TITLE] == "two lines of caption"
    assert items.loc["5", "caption"] == "two lines\nof caption #tag"
    assert items.loc["1", COL_VIDEO_PATH] == str((folder / "videos" / "1.mp4").resolve())
    assert items[COL_VIDEO_PATH].notna().sum() == 1
    assert items.loc["2", COL_COVER_PATH] == str((folder / "covers" / "2.jpg").resolve())
    assert items[COL_COVER_PATH].notna().sum() == 1
    assert dataset.info["videos"] == 1
    assert dataset.info["titles_from_hashtags"] == 1


def test_no_pairs_file_gives_empty_interactions(tmp_path):
    folder = _write_microlens(tmp_path / "microlens")
    dataset = load_microlens(folder)
    assert len(dataset.interactions) == 0
    assert len(dataset.users) == 0
    assert not dataset.has_interactions
    assert dataset.info["interactions"] == (
        f"none: no MicroLens-50k_pairs.csv or MicroLens-50k_pairs.tsv in {folder.resolve()}"
    )
    assert str(dataset.interactions["timestamp"].dtype) == "int64"


def test_pairs_csv(tmp_path):
    pairs = "userID,videoID,timestamp\n10,1,1600000100\n10,2,1600000200\n7,1,1600000050\n"
    dataset = load_microlens(_write_microlens(tmp_path / "microlens", pairs_csv=pairs))
    interactions = dataset.interactions
    assert interactions[COL_USER].tolist() == ["7", "10", "10"]
    assert interactions[COL_ITEM].tolist() == ["1", "1", "2"]
    assert interactions["timestamp"].tolist() == [1600000050, 1600000100, 1600000200]
    assert set(interactions["event"]) == {EVENT_VIEW}
    assert interactions["value"].tolist() == [1.0, 1.0, 1.0]
    assert dataset.users[COL_USER].tolist() == ["7", "10"]
    assert dataset.info["interactions"].startswith("MicroLens-50k_pairs.csv: 3 rows")


def test_pairs_csv_milliseconds_converted(tmp_path):
    pairs = "userID,videoID,timestamp\n10,1,1600000100123\n"
    dataset = load_microlens(_write_microlens(tmp_path / "microlens", pairs_csv=pairs))
    assert dataset.interactions["timestamp"].tolist() == [1600000100]
    assert "milliseconds" in dataset.info["interactions"]


def test_pairs_tsv_synthesizes_order_timestamps(tmp_path):
    pairs = "10\t2 1 4\n7\t3\n"
    dataset = load_microlens(_write_microlens(tmp_path / "microlens", pairs_tsv=pairs))
    by_user = {
        user: group.sort_values("timestamp")[[COL_ITEM, "timestamp"]].values.tolist()
        for user, group in dataset.interactions.groupby(COL_USER)
    }
    assert by_user == {"10": [["2", 0], ["1", 1], ["4", 2]], "7": [["3", 0]]}
    assert "synthesized" in dataset.info["interactions"]


@pytest.mark.parametrize(
    "pairs_csv, pairs_tsv, pattern",
    [
        ("userID,videoID,timestamp\n10,1,1600000100\n10,99,1600000200\n", None, r"MicroLens-50k_pairs\.csv line 3: unknown video id '99'"),
        ("userID,videoID,timestamp\n10,1,soon\n", None, r"MicroLens-50k_pairs\.csv line 2: timestamp 'soon' is not a whole number"),
        ("userID,videoID\n10,1\n", None, r"MicroLens-50k_pairs\.csv line 1: header .* lacks column\(s\) \['timestamp'\]"),
        (None, "10\t1 2\n7\t1 42\n", r"MicroLens-50k_pairs\.tsv line 2: unknown video id '42'"),
        (None, "10\t1 2\n7 1 2\n", r"MicroLens-50k_pairs\.tsv line 2: expected 2 fields"),
        (None, "10\t1 2\n7\t \n", r"MicroLens-50k_pairs\.tsv line 2: expected a user id, a TAB and at least one video id"),
    ],
)
def test_bad_pairs_name_file_and_line(tmp_path, pairs_csv, pairs_tsv, pattern):
    folder = _write_microlens(tmp_path / "microlens", pairs_csv=pairs_csv, pairs_tsv=pairs_tsv)
    with pytest.raises(DataError, match=pattern):
        load_microlens(folder)


@pytest.mark.parametrize(
    "titles, pattern",
    [
        ("item,title\n1,a\n2,b\n1,c\n", r"MicroLens-50k_titles\.csv line 4: item '1' appears more than once"),
        ("id,caption\n1,a\n", r"MicroLens-50k_titles\.csv line 1: header .* lacks column\(s\) \['item', 'title'\]"),
        ("item,title\n1,a,b\n", r"MicroLens-50k_titles\.csv line 2: expected 2 fields"),
        ("item,title\n", r"MicroLens-50k_titles\.csv is empty"),
    ],
)
def test_bad_titles_name_file_and_line(tmp_path, titles, pattern):
    folder = _write_microlens(tmp_path / "microlens", titles=titles)
    with pytest.raises(DataError, match=pattern):
        load_microlens(folder)


def test_max_items_limits_items_and_views(tmp_path):
    pairs = "userID,videoID,timestamp\n10,1,100\n10,4,200\n7,3,300\n"
    dataset = load_microlens(_write_microlens(tmp_path / "microlens", pairs_csv=pairs), max_items=2)
    assert dataset.items[COL_ITEM].tolist() == ["1", "2"]
    assert dataset.interactions[COL_ITEM].tolist() == ["1"]
    assert dataset.users[COL_USER].tolist() == ["10"]
    assert "2 rows with items beyond max_items dropped" in dataset.info["interactions"]


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10"])
def test_max_items_must_be_positive_integer(tmp_path, bad):
    with pytest.raises(ValueError, match=rf"max_items must be a positive integer or None; got {re.escape(repr(bad))}"):
        load_microlens(tmp_path, max_items=bad)


def test_lookup_through_env_and_data_raw(tmp_path, isolated_home, monkeypatch):
    raw_folder = _write_microlens(isolated_home / "data" / "raw" / "microlens", titles="item,title\n1,raw\n")
    assert load_microlens().source == str(raw_folder)

    env_folder = _write_microlens(tmp_path / "env" / "microlens-sample", titles="item,title\n1,env\n")
    monkeypatch.setenv("VIDREC_LAB_DATA", str(env_folder.parent))
    assert load_microlens().source == str(env_folder)
    assert load_dataset("microlens").items[COL_TITLE].tolist() == ["env"]


def test_env_folder_finds_sibling_data_set(tmp_path, isolated_home, monkeypatch, caplog):
    # VIDREC_LAB_DATA=.../datasets/ml-100k, as in `make demo`, must still find .../datasets/microlens-sample.
    sibling = tmp_path / "datasets" / "ml-100k"
    sibling.mkdir(parents=True)
    folder = _write_microlens(tmp_path / "datasets" / "microlens-sample", titles="item,title\n1,beside\n")
    monkeypatch.setenv("VIDREC_LAB_DATA", str(sibling))
    with caplog.at_level(logging.INFO, logger="vidrec_lab.datasets._paths"):
        assert load_microlens().source == str(folder)
    assert f"found {folder} beside VIDREC_LAB_DATA={sibling}, in its parent folder" in caplog.text


def test_missing_folder_lists_places_searched(isolated_home):
    with pytest.raises(DatasetNotFoundError, match=r"missing file MicroLens-50k_titles\.csv; searched .*data/raw/microlens"):
        load_microlens()


@pytest.mark.realdata
def test_real_microlens_sample(shared_datasets):
    folder = shared_datasets / "microlens-sample"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    dataset = load_microlens(folder)
    items = dataset.items.set_index(COL_ITEM)
    assert len(items) == 19220
    with_video = items[items[COL_VIDEO_PATH].notna()]
    assert sorted(with_video.index) == ["1002", "10034"]
    assert with_video.loc["1002", COL_VIDEO_PATH].endswith("videos/1002.mp4")
    assert len(dataset.interactions) == 0
    assert dataset.info["interactions"].startswith("none: no MicroLens-50k_pairs")
    assert items.loc["1", COL_TAGS] == ["comic", "Two Yuan", "My destiny villain"]
    assert items.loc["1002", COL_TAGS] == ["King glory", "Dream tears"]
    assert items.loc["1", COL_TITLE] == "Gu long song gaga bad, even three hundred years old are not let go."
    assert (items[COL_TITLE] != "").all()


@pytest.mark.realdata
def test_real_microlens_max_items(shared_datasets):
    folder = shared_datasets / "microlens-sample"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    dataset = load_microlens(folder, max_items=50)
    assert dataset.items[COL_ITEM].tolist()[:3] == ["1", "2", "3"]
    assert len(dataset.items) == 50
