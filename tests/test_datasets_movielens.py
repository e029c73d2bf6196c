"""MovieLens loaders on tiny files written here, plus the real ml-100k when present."""

from __future__ import annotations

import logging
import re
import socket
import time
import warnings

import pandas as pd
import pytest

from movielens_files import (
    ML100K_FILES,
    file_sums,
    write_latest_small,
    write_ml1m,
    write_ml100k,
    zip_folder,
)
from vidrec_lab.constants import COL_GENRES, COL_ITEM, COL_TAGS, COL_TITLE, COL_USER, COL_YEAR, EVENT_RATING
from vidrec_lab.datasets import (
    ChecksumError,
    DatasetNotFoundError,
    load_dataset,
    load_for_profile,
    load_movielens_1m,
    load_movielens_100k,
    load_movielens_latest_small,
    movielens,
    split_title_year,
)
from vidrec_lab.tables import DataError


def _closed_port_url(name: str) -> str:
    """Return a loopback URL on a port with no server, so any download attempt fails at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


def _by_id(dataset):
    return dataset.items.set_index(COL_ITEM)


# ---------------------------------------------------------------------------
# Titles
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Toy Story (1995)", ("Toy Story", 1995)),
        ("Usual Suspects, The (1995)", ("Usual Suspects, The", 1995)),
        ("Heidi Fleiss: Hollywood Madam (1995) ", ("Heidi Fleiss: Hollywood Madam", 1995)),
        ("Land Before Time III: The Time of the Great Giving (1995) (V)", ("Land Before Time III: The Time of the Great Giving (V)", 1995)),
        ("Double vie de Véronique, La (Double Life of Veronique, The) (1991)", ("Double vie de Véronique, La (Double Life of Veronique, The)", 1991)),
        ("Babylon 5", ("Babylon 5", None)),
        ("Cosmos (1980)", ("Cosmos", 1980)),
        ("Band of Brothers (2001\u20132002)", ("Band of Brothers", 2001)),
        ("unknown", ("unknown", None)),
    ],
)
def test_split_title_year(raw, expected):
    assert split_title_year(raw) == expected


# ---------------------------------------------------------------------------
# ml-100k on tiny files
# ---------------------------------------------------------------------------


def test_ml100k_items_parsed(tmp_path):
    dataset = load_movielens_100k(write_ml100k(tmp_path / "ml-100k"), verify=False)
    items = _by_id(dataset)
    assert list(items.index) == ["1", "2", "3", "4", "5", "6"]
    assert list(items[COL_TITLE]) == [
        "Toy Story",
        "Usual Suspects, The",
        "Misérables, Les",
        "Land Before Time III (V)",
        "Old Film",
        "unknown",
    ]
    # Item 5 has no year in its title, so the year comes from its release date.
    assert items[COL_YEAR].tolist()[:5] == [1995, 1995, 1995, 1995, 1962]
    assert pd.isna(items.loc["6", COL_YEAR])
    assert items.loc["1", COL_GENRES] == ["Comedy"]
    assert items.loc["2", COL_GENRES] == ["Action", "Drama"]
    assert items.loc["6", COL_GENRES] == ["unknown"]
    assert items.loc["2", "release_date"] == pd.Timestamp("1995-08-14")
    assert items.loc["3", "imdb_url"] == "http://us.imdb.com/Title?Mis%E9rables"
    assert items.loc["4", "imdb_url"] is None
    assert dataset.info["genres"] == ["unknown", "Action", "Comedy", "Drama"]


def test_ml100k_users_and_ratings(tmp_path):
    dataset = load_movielens_100k(write_ml100k(tmp_path / "ml-100k"), verify=False)
    users = dataset.users.set_index(COL_USER)
    assert list(users.index) == ["1", "2", "3"]
    assert users.loc["2", "age"] == 53
    assert users.loc["3", "gender"] == "F"
    assert users.loc["1", "occupation"] == "technician"
    assert users.loc["3", "zip_code"] == "T8H1N"

    interactions = dataset.interactions
    assert interactions[COL_USER].tolist() == ["1", "1", "2", "3", "2"]
    assert interactions[COL_ITEM].tolist() == ["1", "2", "3", "4", "1"]
    assert interactions["value"].tolist() == [5.0, 3.0, 4.0, 1.0, 2.0]
    assert interactions["timestamp"].tolist() == [881250949, 881250950, 881250951, 881250952, 881250953]
    assert set(interactions["event"]) == {EVENT_RATING}
    assert str(interactions["value"].dtype) == "float64"
    assert dataset.name == "ml-100k"


@pytest.mark.parametrize(
    "file, text, pattern",
    [
        ("u.data", "1\t1\t5\t881250949\n1\t2\t3\t881250950\n2\t3\t4\n", r"u\.data line 3: expected 4 fields"),
        ("u.data", "1\t1\tfive\t881250949\n", r"u\.data line 1: rating 'five' is not a number"),
        ("u.data", "1\t1\t5\t881250949\n\n1\t99\t3\t881250950\n", r"u\.data line 3: unknown item id '99', not in u\.item"),
        ("u.data", "1\t1\t5\t881250949\n7\t1\t3\t881250950\n", r"u\.data line 2: unknown user id '7'"),
        ("u.data", "1\t1\t7\t881250949\n", r"u\.data line 1: rating '7' is outside the MovieLens scale"),
        ("u.data", "1\t1\t5\tyesterday\n", r"u\.data line 1: timestamp 'yesterday' is not a whole number"),
        ("u.data", "", r"u\.data is empty"),
        ("u.data", "\n\n", r"u\.data is empty"),
        ("u.item", "1|Toy Story (1995)|01-Jan-1995||url|0|0|1\n", r"u\.item line 1: expected 9 fields"),
        ("u.item", "1|Toy Story (1995)|01-Jan-1995||url|0|0|2|0\n", r"u\.item line 1: genre flag 3 \(Comedy\) is '2'; expected 0 or 1"),
        ("u.item", "1|A (1995)|01-Jan-1995||u|0|0|1|0\n1|B (1995)|01-Jan-1995||u|0|0|1|0\n", r"u\.item line 2: item id '1' appears more than once"),
        ("u.item", "1|A (1995)|1995-01-01||u|0|0|1|0\n", r"u\.item line 1: release date '1995-01-01' is not a date"),
        ("u.user", "1|twenty|M|technician|85711\n", r"u\.user line 1: age 'twenty' is not a whole number"),
        ("u.genre", "Action|zero\n", r"u\.genre line 1: genre index 'zero' is not a whole number"),
    ],
)
def test_ml100k_bad_input_names_file_and_line(tmp_path, file, text, pattern):
    folder = write_ml100k(tmp_path / "ml-100k", **{file: text})
    with pytest.raises(DataError, match=pattern):
        load_movielens_100k(folder, verify=False)


def test_ml100k_crlf_and_blank_lines(tmp_path):
    data = "1\t1\t5\t881250949\r\n\r\n   \r\n2\t3\t4\t881250951\r\n"
    dataset = load_movielens_100k(write_ml100k(tmp_path / "ml-100k", **{"u.data": data}), verify=False)
    assert dataset.interactions[COL_ITEM].tolist() == ["1", "3"]
    assert dataset.interactions["value"].tolist() == [5.0, 4.0]


def test_ml100k_crlf_error_line_number(tmp_path):
    data = "1\t1\t5\t881250949\r\n\r\n2\t3\tbad\t881250951\r\n"
    folder = write_ml100k(tmp_path / "ml-100k", **{"u.data": data})
    with pytest.raises(DataError, match=r"u\.data line 3: rating 'bad' is not a number"):
        load_movielens_100k(folder, verify=False)


def test_ml100k_missing_file_names_file_and_folder(tmp_path):
    folder = write_ml100k(tmp_path / "ml-100k", **{"u.item": None})
    with pytest.raises(DatasetNotFoundError, match=rf"missing file u\.item in folder {re.escape(str(folder))}"):
        load_movielens_100k(folder, verify=False)


def test_ml100k_missing_folder_names_places_searched(tmp_path):
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    # An explicit path never triggers a download, so the closed port is never contacted.
    with pytest.raises(DatasetNotFoundError, match=r"ml-100k: missing file u\.data; searched .*nothing-here"):
        load_movielens_100k(empty, url=_closed_port_url("ml-100k.zip"))


def test_ml100k_not_found_without_download(isolated_home):
    expected = isolated_home / "data" / "raw" / "ml-100k.zip"
    with pytest.raises(DatasetNotFoundError, match=rf"download=False.*save it as {re.escape(str(expected))}"):
        load_movielens_100k(download=False)


def test_ml100k_duplicate_rows_dropped_with_warning(tmp_path, caplog):
    data = "1\t1\t5\t881250949\n1\t1\t5\t881250949\n2\t3\t4\t881250951\n"
    folder = write_ml100k(tmp_path / "ml-100k", **{"u.data": data})
    with caplog.at_level(logging.WARNING, logger="vidrec_lab.tables"):
        dataset = load_movielens_100k(folder, verify=False)
    assert len(dataset.interactions) == 2
    assert "dropped 1 duplicate" in caplog.text


# ---------------------------------------------------------------------------
# Lookup order and archives
# ---------------------------------------------------------------------------


def test_ml100k_found_through_env_folder_itself(isolated_home, tmp_path, monkeypatch):
    folder = write_ml100k(tmp_path / "somewhere" / "ml-100k")
    monkeypatch.setenv("VIDREC_LAB_DATA", str(folder))
    dataset = load_movielens_100k(verify=False, download=False)
    assert dataset.source == str(folder)


def test_ml100k_found_through_env_parent(isolated_home, tmp_path, monkeypatch):
    folder = write_ml100k(tmp_path / "datasets" / "ml-100k")
    monkeypatch.setenv("VIDREC_LAB_DATA", str(folder.parent))
    assert load_movielens_100k(verify=False, download=False).source == str(folder)


def test_ml100k_found_in_data_raw(isolated_home):
    folder = write_ml100k(isolated_home / "data" / "raw" / "ml-100k")
    assert load_movielens_100k(verify=False, download=False).source == str(folder)


def test_ml100k_path_argument_wins_over_env(isolated_home, tmp_path, monkeypatch):
    env_folder = write_ml100k(tmp_path / "env" / "ml-100k")
    explicit = write_ml100k(tmp_path / "explicit" / "ml-100k", **{"u.data": "1\t1\t5\t881250949\n"})
    monkeypatch.setenv("VIDREC_LAB_DATA", str(env_folder))
    dataset = load_movielens_100k(explicit, verify=False)
    assert dataset.source == str(explicit)
    assert len(dataset.interactions) == 1


def test_ml100k_zip_extracted_beside_itself(tmp_path):
    source = write_ml100k(tmp_path / "build" / "ml-100k")
    archive = zip_folder(source, tmp_path / "downloads" / "ml-100k.zip", root="ml-100k")
    dataset = load_movielens_100k(archive, verify=False)
    assert dataset.source == str(tmp_path / "downloads" / "ml-100k")
    assert _by_id(dataset).loc["3", COL_TITLE] == "Misérables, Les"
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == ["ml-100k", "ml-100k.zip"]
    # A second call uses the extracted folder.
    assert load_movielens_100k(archive, verify=False).source == dataset.source


def test_ml100k_zip_in_env_folder(isolated_home, tmp_path, monkeypatch):
    source = write_ml100k(tmp_path / "build" / "ml-100k")
    zip_folder(source, tmp_path / "env" / "ml-100k.zip", root="ml-100k")
    monkeypatch.setenv("VIDREC_LAB_DATA", str(tmp_path / "env"))
    dataset = load_movielens_100k(verify=False, download=False)
    assert dataset.source == str(tmp_path / "env" / "ml-100k")
    assert dataset.info["archive"] == str(tmp_path / "env" / "ml-100k.zip")


def test_ml100k_edited_zip_rejected_by_checksum(tmp_path):
    source = write_ml100k(tmp_path / "build" / "ml-100k")
    archive = zip_folder(source, tmp_path / "downloads" / "ml-100k.zip", root="ml-100k")
    with pytest.raises(ChecksumError, match=r"u\.data: expected SHA-256 06416e59"):
        load_movielens_100k(archive)
    # Nothing was put in place, not even a temporary folder.
    assert [p.name for p in (tmp_path / "downloads").iterdir()] == ["ml-100k.zip"]


def test_ml100k_zip_accepted_when_sums_match(tmp_path, monkeypatch):
    source = write_ml100k(tmp_path / "build" / "ml-100k")
    archive = zip_folder(source, tmp_path / "downloads" / "ml-100k.zip", root="ml-100k")
    monkeypatch.setattr(movielens, "ML_100K_SHA256", file_sums(source, ML100K_FILES))
    dataset = load_movielens_100k(archive)
    assert dataset.info["checksums"] == "verified"


# ---------------------------------------------------------------------------
# Checksums of an existing folder
# ---------------------------------------------------------------------------


def test_ml100k_edited_folder_warns_naming_files(tmp_path):
    folder = write_ml100k(tmp_path / "ml-100k")
    with pytest.warns(UserWarning, match=r"u\.data: expected SHA-256 06416e59") as record:
        dataset = load_movielens_100k(folder)
    assert "u.item" in str(record[0].message)
    assert dataset.info["checksums"] == "mismatch"
    assert dataset.info["checksum_mismatches"] == sorted(ML100K_FILES)
    assert len(dataset.items) == 6


def test_ml100k_names_only_edited_file(tmp_path, monkeypatch):
    folder = write_ml100k(tmp_path / "ml-100k")
    sums = file_sums(folder, ML100K_FILES)
    sums["u.user"] = "0" * 64
    monkeypatch.setattr(movielens, "ML_100K_SHA256", sums)
    with pytest.warns(UserWarning, match=r"1 file\(s\) differ"):
        dataset = load_movielens_100k(folder)
    assert dataset.info["checksum_mismatches"] == ["u.user"]


def test_ml100k_verify_false_skips_check(tmp_path):
    folder = write_ml100k(tmp_path / "ml-100k")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = load_movielens_100k(folder, verify=False)
    assert dataset.info["checksums"] == "skipped (verify=False)"


# ---------------------------------------------------------------------------
# ml-1m and ml-latest-small
# ---------------------------------------------------------------------------


def test_ml1m_tables(tmp_path):
    dataset = load_movielens_1m(write_ml1m(tmp_path / "ml-1m"))
    items = _by_id(dataset)
    assert list(items[COL_TITLE]) == ["Toy Story", "Misérables, Les", "Babylon 5"]
    assert items[COL_YEAR].tolist()[:2] == [1995, 1995]
    assert pd.isna(items.loc["3", COL_YEAR])
    assert items.loc["1", COL_GENRES] == ["Animation", "Children's", "Comedy"]
    users = dataset.users.set_index(COL_USER)
    assert users.loc["1", "occupation"] == "K-12 student"
    assert users.loc["2", "occupation"] == "self-employed"
    assert users.loc["2", "age"] == 56
    assert users.loc["1", "gender"] == "F"
    # Sorted by time: 978300760, 978301000, 978301968, 978302109.
    assert dataset.interactions["value"].tolist() == [5.0, 1.0, 4.0, 3.0]
    assert dataset.interactions[COL_ITEM].tolist() == ["1", "1", "3", "2"]
    assert set(dataset.interactions["event"]) == {EVENT_RATING}
    assert dataset.info["checksums"] == "no published sums for extracted files"


@pytest.mark.parametrize(
    "file, text, pattern",
    [
        ("ratings.dat", "1::1::5::978300760\n1::2::3\n", r"ratings\.dat line 2: expected 4 fields separated by '::'"),
        ("ratings.dat", "1::1::5::978300760\n1::9::3::978300761\n", r"ratings\.dat line 2: unknown movie id '9', not in movies\.dat"),
        ("ratings.dat", "1::1::x::978300760\n", r"ratings\.dat line 1: rating 'x' is not a number"),
        ("users.dat", "1::F::1::25::48067\n", r"users\.dat line 1: occupation code 25 is not one of 0-20"),
        ("movies.dat", "", r"movies\.dat is empty"),
    ],
)
def test_ml1m_bad_input(tmp_path, file, text, pattern):
    folder = write_ml1m(tmp_path / "ml-1m", **{file: text})
    with pytest.raises(DataError, match=pattern):
        load_movielens_1m(folder)


def test_ml1m_archive_checked_against_published_sum(tmp_path, monkeypatch):
    source = write_ml1m(tmp_path / "build" / "ml-1m")
    archive = zip_folder(source, tmp_path / "raw" / "ml-1m.zip", root="ml-1m")
    with pytest.raises(ChecksumError, match=r"ml-1m\.zip: expected SHA-256 a6898adb"):
        load_movielens_1m(archive)
    assert not (tmp_path / "raw" / "ml-1m").exists()

    monkeypatch.setitem(movielens.ARCHIVE_SHA256, "ml-1m.zip", file_sums(archive.parent, ["ml-1m.zip"])["ml-1m.zip"])
    dataset = load_movielens_1m(archive)
    assert dataset.info["checksums"] == "verified archive"
    assert len(dataset.interactions) == 4


def test_latest_small_tables(tmp_path):
    dataset = load_movielens_latest_small(write_latest_small(tmp_path / "ml-latest-small"))
    items = _by_id(dataset)
    assert list(items.index) == ["1", "11", "4973", "6"]
    assert items.loc["11", COL_TITLE] == "American President, The"
    assert items.loc["4973", COL_TITLE] == "Amélie (Fabuleux destin d'Amélie Poulain, Le)"
    assert items.loc["4973", COL_YEAR] == 2001
    assert items.loc["6", COL_GENRES] == []
    assert items.loc["1", COL_GENRES] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    # Tags in the order first written; "Pixar" repeats "pixar" and is dropped.
    assert items.loc["1", COL_TAGS] == ["fun", "pixar"]
    assert items.loc["4973", COL_TAGS] == ["搞笑"]
    assert items.loc["11", COL_TAGS] == []
    assert items.loc["1", "imdb_id"] == "0114709"
    assert items.loc["6", "tmdb_id"] is None
    assert list(dataset.users[COL_USER]) == ["1", "2", "10"]
    ratings = dataset.interactions.set_index(COL_ITEM)["value"]
    assert ratings["11"] == 3.5
    assert ratings["6"] == 0.5


def test_latest_small_without_optional_files(tmp_path):
    folder = write_latest_small(tmp_path / "ml-latest-small", **{"tags.csv": None, "links.csv": None})
    dataset = load_movielens_latest_small(folder)
    assert dataset.items[COL_TAGS].tolist() == [[], [], [], []]
    assert "imdb_id" not in dataset.items.columns
    assert dataset.info["tags"] == "none: no tags.csv"


@pytest.mark.parametrize(
    "file, text, pattern",
    [
        ("ratings.csv", "userId,movieId,rating\n1,1,4.0\n", r"ratings\.csv line 1: header .* lacks column\(s\) \['timestamp'\]"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,4.0,964982703\n", r"ratings\.csv line 3: unknown movieId '2'"),
        ("movies.csv", 'movieId,title,genres\n1,"Toy Story (1995),Comedy\n', r"movies\.csv line \d+: .*"),
        ("tags.csv", "userId,movieId,tag,timestamp\n2,77,pixar,1445714994\n", r"tags\.csv line 2: unknown movieId '77'"),
    ],
)
def test_latest_small_bad_input(tmp_path, file, text, pattern):
    folder = write_latest_small(tmp_path / "ml-latest-small", **{file: text})
    with pytest.raises(DataError, match=pattern):
        load_movielens_latest_small(folder)


def test_multiline_quoted_field_keeps_line_numbers(tmp_path):
    # The first record spans lines 2-3, so the repeated id sits on line 4.
    movies = 'movieId,title,genres\n1,"Toy\nStory (1995)",Comedy\n1,Heat (1995),Action\n'
    folder = write_latest_small(tmp_path / "ml-latest-small", **{"movies.csv": movies, "tags.csv": None, "links.csv": None})
    with pytest.raises(DataError, match=r"movies\.csv line 4: movieId '1' appears more than once"):
        load_movielens_latest_small(folder)


# ---------------------------------------------------------------------------
# Dispatcher
# ---------------------------------------------------------------------------


def test_load_dataset_by_name(tmp_path):
    dataset = load_dataset("ml-100k", write_ml100k(tmp_path / "ml-100k"), verify=False)
    assert dataset.name == "ml-100k"
    assert load_dataset("ml-1m", write_ml1m(tmp_path / "ml-1m")).name == "ml-1m"


def test_load_dataset_unknown_name():
    with pytest.raises(ValueError, match=r"name must be one of \['ml-100k', 'ml-1m', 'ml-latest-small', 'microlens', 'synthetic'\]; got 'ml-10m'"):
        load_dataset("ml-10m")


def test_load_for_fast_profile_uses_ml100k(tmp_path):
    folder = write_ml100k(tmp_path / "ml-100k")
    with pytest.warns(UserWarning, match="differ from the published MovieLens files"):
        dataset = load_for_profile("fast", path=folder)
    assert dataset.name == "ml-100k"


# ---------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_ml100k(shared_datasets):
    folder = shared_datasets / "ml-100k"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    started = time.perf_counter()
    dataset = load_movielens_100k(folder)
    seconds = time.perf_counter() - started
    logging.getLogger(__name__).info("real ml-100k loaded in %.2f s", seconds)
    assert len(dataset.users) == 943
    assert len(dataset.items) == 1682
    assert len(dataset.interactions) == 100000
    assert dataset.info["checksums"] == "verified"
    items = _by_id(dataset)
    assert items.loc["12", COL_TITLE] == "Usual Suspects, The"
    assert items.loc["543", COL_TITLE] == "Misérables, Les"
    assert items.loc["543", COL_YEAR] == 1995
    assert items.loc["1", COL_GENRES] == ["Animation", "Children's", "Comedy"]
    assert dataset.interactions["value"].between(1, 5).all()


@pytest.mark.realdata
def test_real_ml100k_through_env_parent(shared_datasets, isolated_home, monkeypatch):
    if not (shared_datasets / "ml-100k").is_dir():
        pytest.skip("ml-100k not in the shared folder")
    monkeypatch.setenv("VIDREC_LAB_DATA", str(shared_datasets))
    dataset = load_movielens_100k(download=False)
    assert dataset.source == str((shared_datasets / "ml-100k").resolve())
