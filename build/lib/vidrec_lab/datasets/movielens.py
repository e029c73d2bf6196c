"""MovieLens loaders: 100k, 1M and latest-small, from a folder, an archive or a download.

Each loader finds its data set in the standard places (the ``path``
argument, ``VIDREC_LAB_DATA``, ``<project_home>/data/raw``; see
:mod:`vidrec_lab.datasets._paths`), accepts the extracted folder or the
official zip, and downloads the zip from GroupLens when nothing is found and
``download=True``. The result is a :class:`~vidrec_lab.tables.Dataset` whose
interactions are star ratings (``event="rating"``, ``value`` = stars).

Titles keep their text as in the file but lose the trailing ``(1995)`` year,
which moves to the ``year`` column: ``"Usual Suspects, The (1995)"`` becomes
``"Usual Suspects, The"`` and 1995. A ``(V)`` or ``(TV)`` marker after the
year stays in the title.

Checksums:

* ml-100k: the six data files are compared with the SHA-256 sums of the
  files in GroupLens' ml-100k.zip (``ML_100K_SHA256``). Files extracted from
  an archive must match, or the archive is not extracted
  (:class:`ChecksumError`). A folder that already exists only gets a warning
  that names each mismatching file, because users and tests edit these
  files on purpose.
* ml-1m and ml-latest-small: only the archives have known sums
  (``ARCHIVE_SHA256``), so archives are checked and extracted folders are not.

``verify=False`` skips every check.
"""

from __future__ import annotations

import logging
import os
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from vidrec_lab.constants import (
    COL_EVENT,
    COL_GENRES,
    COL_ITEM,
    COL_TAGS,
    COL_TIMESTAMP,
    COL_TITLE,
    COL_USER,
    COL_VALUE,
    COL_YEAR,
    EVENT_RATING,
)
from vidrec_lab.datasets._paths import (
    DatasetNotFoundError,
    Records,
    check_known,
    check_unique,
    download_dir,
    format_searched,
    locate_dataset,
    numeric_column,
    read_records,
)
from vidrec_lab.datasets.download import (
    ChecksumError,
    describe_mismatches,
    download_file,
    extract_zip,
    find_mismatches,
    sha256_file,
)
from vidrec_lab.tables import DataError, Dataset

logger = logging.getLogger(__name__)

ML_100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML_1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
ML_LATEST_SMALL_URL = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
GROUPLENS_PAGE = "https://grouplens.org/datasets/movielens/"

# SHA-256 of the files in GroupLens' ml-100k.zip.
ML_100K_SHA256 = {
    "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
    "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
    "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
    "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
    "u.occupation": "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d",
    "u.info": "5b0a40b2e47a729ee6203063f6dcf8790c2e63f5a18663e6ee318a72c5f3c27b",
}

# SHA-256 of whole archives, as recorded by TensorFlow Datasets
# (tensorflow/datasets, tensorflow_datasets/url_checksums/movielens.txt).
# NOTE: GroupLens may refresh ml-latest-small; a new release fails this check
# until the sum is updated, and verify=False loads it meanwhile.
ARCHIVE_SHA256 = {
    "ml-1m.zip": "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
    "ml-latest-small.zip": "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
}

# Columns the MovieLens item and user tables add to the shared ones.
COL_RELEASE_DATE = "release_date"
COL_IMDB_URL = "imdb_url"
COL_IMDB_ID = "imdb_id"
COL_TMDB_ID = "tmdb_id"
COL_AGE = "age"
COL_GENDER = "gender"
COL_OCCUPATION = "occupation"
COL_ZIP_CODE = "zip_code"

_RATING_MIN, _RATING_MAX = 0.5, 5.0  # the MovieLens star scale (half stars from 2003 on)

# "Title (1995)", "Title (1995) (V)", "Series (2006-2007)"; the year is the first four digits.
_TITLE_YEAR = re.compile(
    r"^(?P<title>.*?)\s*\((?P<year>\d{4})(?:[-\u2013]\d{0,4})?\)(?P<marker>\s*\((?:V|TV)\))?\s*$"
)

# Occupation codes of users.dat, from the README inside ml-1m.zip.
ML_1M_OCCUPATIONS = {
    0: "other or not specified",
    1: "academic/educator",
    2: "artist",
    3: "clerical/admin",
    4: "college/grad student",
    5: "customer service",
    6: "doctor/health care",
    7: "executive/managerial",
    8: "farmer",
    9: "homemaker",
    10: "K-12 student",
    11: "lawyer",
    12: "programmer",
    13: "retired",
    14: "sales/marketing",
    15: "scientist",
    16: "self-employed",
    17: "technician/engineer",
    18: "tradesman/craftsman",
    19: "unemployed",
    20: "writer",
}
# ml-latest-small writes this instead of an empty genre list.
_NO_GENRES = "(no genres listed)"


def split_title_year(raw: str) -> tuple[str, int | None]:
    """Split a MovieLens title into the title without its year and the year.

    Args:
        raw (str): Title as in the file, e.g. ``"Usual Suspects, The (1995)"``.

    Returns:
        tuple: (title, year), e.g. ``("Usual Suspects, The", 1995)``; the year
        is None and the title only stripped when there is no ``(YYYY)`` at the end.
    """
    text = raw.strip()
    match = _TITLE_YEAR.match(text)
    if match is None:
        return text, None
    title = match.group("title").strip()
    marker = (match.group("marker") or "").strip()
    if marker:
        title = f"{title} {marker}"
    return title, int(match.group("year"))


# ---------------------------------------------------------------------------
# Finding, downloading and verifying the files
# ---------------------------------------------------------------------------


def _manual_hint(name: str, url: str) -> str:
    target = download_dir() / f"{name}.zip"
    return (
        f"Download {url} (see {GROUPLENS_PAGE}) and save it as {target}, "
        f"or pass path= the folder that contains the extracted {name} files"
    )


def _check_archive_sum(archive: Path) -> str:
    """Compare an archive with ``ARCHIVE_SHA256`` and return the check status for ``info``."""
    expected = ARCHIVE_SHA256.get(archive.name)
    if expected is None:
        return "no published sum for this archive"
    actual = sha256_file(archive)
    if actual != expected:
        raise ChecksumError(
            f"{archive}: expected SHA-256 {expected}, got {actual}; the archive was not extracted. "
            f"Delete it and run again to download a fresh copy, or pass verify=False to use it as is"
        )
    return "verified archive"


def _check_folder_sums(folder: Path, expected: dict[str, str], *, verify: bool) -> tuple[str, list[str]]:
    """Warn about files in an existing folder that differ from ``expected``; return status and names."""
    if not verify:
        return "skipped (verify=False)", []
    mismatches = find_mismatches(folder, expected)
    if not mismatches:
        return "verified", []
    message = (
        f"{folder}: {len(mismatches)} file(s) differ from the published MovieLens files: "
        f"{describe_mismatches(folder, mismatches, expected)}. Loading them anyway because the folder "
        "already existed (edited on purpose?); pass verify=False to silence this"
    )
    logger.warning(message)
    warnings.warn(message, UserWarning, stacklevel=4)
    return "mismatch", sorted(mismatches)


def _resolve_folder(
    name: str,
    path: str | os.PathLike | None,
    *,
    marker: str,
    url: str,
    download: bool,
    verify: bool,
    file_sha256: dict[str, str] | None = None,
) -> tuple[Path, dict]:
    """Find, extract or download a MovieLens data set and return its folder and provenance notes.

    Files extracted from an archive in this call must match ``file_sha256``;
    an existing folder only gets warnings (see the module docstring).
    """
    archive_name = f"{name}.zip"
    location = locate_dataset(path, marker=marker, folder_names=(name,), archive_name=archive_name)
    info: dict = {"url": url, "downloaded": False, "archive": None}

    archive = location.archive
    if location.folder is None and archive is None:
        if location.explicit:
            raise DatasetNotFoundError(
                f"{name}: missing file {marker}; searched {format_searched(location)}. "
                f"Pass the folder that contains {marker}, a folder that contains {name}/ or {archive_name}, "
                f"or the archive itself"
            )
        if not download:
            raise DatasetNotFoundError(
                f"{name} not found (searched {format_searched(location) or 'nothing'}) and download=False. "
                f"{_manual_hint(name, url)}"
            )
        archive = download_file(
            url,
            download_dir() / archive_name,
            expected_sha256=ARCHIVE_SHA256.get(archive_name) if verify else None,
        )
        info["downloaded"] = True

    if archive is not None and (archive.parent / name / marker).is_file():
        # The archive was extracted before; use that folder like any other.
        location_folder: Path | None = archive.parent / name
        info["archive"] = str(archive)
    else:
        location_folder = location.folder

    if location_folder is not None:
        folder = location_folder
        if file_sha256:
            info["checksums"], info["checksum_mismatches"] = _check_folder_sums(folder, file_sha256, verify=verify)
        else:
            info["checksums"] = "no published sums for extracted files"
        return folder, info

    info["archive"] = str(archive)
    if not verify:
        info["checksums"] = "skipped (verify=False)"
    elif info["downloaded"]:
        # download_file already compared the archive with ARCHIVE_SHA256 when a sum is published.
        info["checksums"] = "verified archive" if archive_name in ARCHIVE_SHA256 else "no published sum for this archive"
    else:
        info["checksums"] = _check_archive_sum(archive)
    folder = extract_zip(
        archive,
        folder_name=name,
        marker=marker,
        expected_sha256=file_sha256 if verify else None,
    )
    if verify and file_sha256:
        info["checksums"] = "verified"
    return folder, info


# ---------------------------------------------------------------------------
# Parsing helpers shared by the three formats
# ---------------------------------------------------------------------------


def _strip_ids(records: Records, *columns: str) -> None:
    for column in columns:
        records.frame[column] = records.frame[column].str.strip()


def _check_ratings(records: Records, values: pd.Series, *, label: str) -> None:
    outside = ((values < _RATING_MIN) | (values > _RATING_MAX)).to_numpy()
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise DataError(
            f"{records.where(row)}: {label} {records.frame.iloc[row][label]!r} is outside the MovieLens "
            f"scale {_RATING_MIN}-{_RATING_MAX} (file {records.path})"
        )


def _ratings_frame(records: Records, *, user: str, item: str, rating: str, timestamp: str) -> pd.DataFrame:
    values = numeric_column(records, rating, integer=False)
    _check_ratings(records, values, label=rating)
    timestamps = numeric_column(records, timestamp, integer=True)
    return pd.DataFrame(
        {
            COL_USER: records.frame[user].to_numpy(),
            COL_ITEM: records.frame[item].to_numpy(),
            COL_TIMESTAMP: timestamps.to_numpy(),
            COL_EVENT: EVENT_RATING,
            COL_VALUE: values.to_numpy(),
        }
    )


def _titles_and_years(raw_titles: pd.Series) -> tuple[list[str], list[int | None]]:
    pairs = [split_title_year(t) for t in raw_titles]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _split_genres(values: pd.Series) -> list[list[str]]:
    genres = []
    for value in values:
        value = value.strip()
        if not value or value == _NO_GENRES:
            genres.append([])
        else:
            genres.append([g for g in value.split("|") if g])
    return genres


def _make_dataset(name: str, folder: Path, items: pd.DataFrame, users: pd.DataFrame, interactions: pd.DataFrame, info: dict, started: float) -> Dataset:
    info = {"folder": str(folder), **info}
    dataset = Dataset(name, items, users, interactions, source=str(folder), info=info)
    logger.info(
        "%s: %d items, %d users, %d interactions from %s in %.2f s",
        name,
        len(dataset.items),
        len(dataset.users),
        len(dataset.interactions),
        folder,
        time.perf_counter() - started,
    )
    return dataset


# ---------------------------------------------------------------------------
# MovieLens 100k
# ---------------------------------------------------------------------------


def _read_genre_names(folder: Path) -> list[str]:
    records = read_records(folder / "u.genre", sep="|", encoding="latin-1", names=["genre", "index"], line_format="genre|index")
    index = numeric_column(records, "index", integer=True, label="genre index")
    order = np.argsort(index.to_numpy(), kind="stable")
    if not np.array_equal(index.to_numpy()[order], np.arange(len(index))):
        raise DataError(
            f"{records.path}: genre indexes {sorted(index.tolist())} are not 0..{len(index) - 1}; "
            "each line must be name|index with every index used once"
        )
    return [records.frame["genre"].iloc[i] for i in order]


def _read_ml100k_items(folder: Path, genre_names: list[str]) -> pd.DataFrame:
    flag_columns = [f"genre_{i}" for i in range(len(genre_names))]
    names = [COL_ITEM, "raw_title", COL_RELEASE_DATE, "video_release_date", COL_IMDB_URL, *flag_columns]
    records = read_records(
        folder / "u.item",
        sep="|",
        encoding="latin-1",
        names=names,
        line_format=f"id|title|release date|video release date|IMDb URL|{len(genre_names)} genre flags",
    )
    _strip_ids(records, COL_ITEM)
    check_unique(records, COL_ITEM, label="item id")

    flags = records.frame[flag_columns]
    valid = flags.isin(["0", "1"]).to_numpy()
    if not valid.all():
        row, column = (int(v[0]) for v in np.nonzero(~valid))
        raise DataError(
            f"{records.where(row)}: genre flag {column + 1} ({genre_names[column]}) is "
            f"{flags.iloc[row, column]!r}; expected 0 or 1 (file {records.path})"
        )
    flag_matrix = flags.to_numpy() == "1"
    genres = [[genre_names[j] for j in np.flatnonzero(row)] for row in flag_matrix]

    dates_raw = records.frame[COL_RELEASE_DATE].str.strip()
    dates = pd.to_datetime(dates_raw, format="%d-%b-%Y", errors="coerce")
    bad = (dates.isna() & (dates_raw != "")).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{records.where(row)}: release date {dates_raw.iloc[row]!r} is not a date like 01-Jan-1995 "
            f"(file {records.path})"
        )

    titles, years = _titles_and_years(records.frame["raw_title"])
    # A title without "(YYYY)" takes the year of its release date, when there is one.
    for row, date in enumerate(dates):
        if years[row] is None and pd.notna(date):
            years[row] = int(date.year)
    urls = records.frame[COL_IMDB_URL].str.strip().astype(object)
    return pd.DataFrame(
        {
            COL_ITEM: records.frame[COL_ITEM],
            COL_TITLE: titles,
            COL_GENRES: genres,
            COL_YEAR: pd.array(years, dtype="Int64"),
            COL_RELEASE_DATE: dates,
            COL_IMDB_URL: urls.where(urls != "", None),
        }
    )


def _read_ml100k_users(folder: Path) -> pd.DataFrame:
    records = read_records(
        folder / "u.user",
        sep="|",
        encoding="latin-1",
        names=[COL_USER, COL_AGE, COL_GENDER, COL_OCCUPATION, COL_ZIP_CODE],
        line_format="user id|age|gender|occupation|zip code",
    )
    _strip_ids(records, COL_USER)
    check_unique(records, COL_USER, label="user id")
    users = records.frame.copy()
    users[COL_AGE] = numeric_column(records, COL_AGE, integer=True)
    return users


def _read_ml100k_ratings(folder: Path, items: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
    records = read_records(
        folder / "u.data",
        sep="\t",
        encoding="latin-1",
        names=[COL_USER, COL_ITEM, "rating", COL_TIMESTAMP],
        line_format="user id<TAB>item id<TAB>rating<TAB>timestamp",
    )
    _strip_ids(records, COL_USER, COL_ITEM)
    check_known(records, COL_ITEM, set(items[COL_ITEM]), label="item id", known_from="u.item")
    check_known(records, COL_USER, set(users[COL_USER]), label="user id", known_from="u.user")
    return _ratings_frame(records, user=COL_USER, item=COL_ITEM, rating="rating", timestamp=COL_TIMESTAMP)


def load_movielens_100k(
    path: str | os.PathLike | None = None,
    *,
    download: bool = True,
    verify: bool = True,
    url: str = ML_100K_URL,
) -> Dataset:
    """Load MovieLens 100k (943 users, 1682 films, 100,000 ratings).

    The folder is searched for in this order:

    1. ``path``;
    2. the ``VIDREC_LAB_DATA`` folder: the ``ml-100k`` folder itself, or a
       folder that contains ``ml-100k/`` or ``ml-100k.zip``;
    3. ``<project_home>/data/raw``, containing ``ml-100k/`` or ``ml-100k.zip``.

    A zip is extracted beside itself. When nothing is found and ``download`` is set, the official zip is
    downloaded into the ``VIDREC_LAB_DATA`` folder when that is set, else
    into ``data/raw``, and extracted there.

    ``u.item`` and the other files are read as Latin-1. Items get ``title``
    (without the year), ``year`` (from the title, else from the release
    date), ``genres`` (names of the flagged ``u.genre`` columns), and the
    extra columns ``release_date`` (datetime) and ``imdb_url``. Users keep
    ``age``, ``gender``, ``occupation`` and ``zip_code``. Interactions are
    ``event="rating"`` with ``value`` = stars (float).

    Args:
        path (path-like, optional): Folder with ``u.data``, a folder
            containing ``ml-100k/`` or ``ml-100k.zip``, or the zip itself.
            When given, no other place is searched and nothing is downloaded.
        download (bool): Download the official zip when nothing is found.
        verify (bool): Compare the files with the published SHA-256 sums (see
            the module docstring for what a mismatch does).
        url (str): Archive URL; tests point it at a local server.

    Returns:
        Dataset: ``name="ml-100k"``; ``info`` records the folder, archive,
        whether it was downloaded and the checksum status.

    Raises:
        DatasetNotFoundError: when the data set or one of its files is
            missing (the message names the file and the places searched).
        DownloadError: when the download fails; the message gives the path to
            save the zip at by hand.
        ChecksumError: when files extracted from an archive differ from the
            published ones.
        DataError: on a malformed line (the message names file, line and value).

    Note:
        Duplicate (user, item, timestamp) ratings are dropped by
        :func:`~vidrec_lab.tables.validate_interactions`, keeping the last
        line, and the number dropped is logged as a warning. The pristine
        files contain none.
    """
    started = time.perf_counter()
    folder, info = _resolve_folder(
        "ml-100k", path, marker="u.data", url=url, download=download, verify=verify, file_sha256=ML_100K_SHA256
    )
    genre_names = _read_genre_names(folder)
    items = _read_ml100k_items(folder, genre_names)
    users = _read_ml100k_users(folder)
    interactions = _read_ml100k_ratings(folder, items, users)
    info["genres"] = genre_names
    return _make_dataset("ml-100k", folder, items, users, interactions, info, started)


# ---------------------------------------------------------------------------
# MovieLens 1M
# ---------------------------------------------------------------------------


def _read_ml1m_items(folder: Path) -> pd.DataFrame:
    records = read_records(
        folder / "movies.dat",
        sep="::",
        encoding="latin-1",
        names=[COL_ITEM, "raw_title", "raw_genres"],
        line_format="MovieID::Title::Genres",
    )
    _strip_ids(records, COL_ITEM)
    check_unique(records, COL_ITEM, label="movie id")
    titles, years = _titles_and_years(records.frame["raw_title"])
    return pd.DataFrame(
        {
            COL_ITEM: records.frame[COL_ITEM],
            COL_TITLE: titles,
            COL_GENRES: _split_genres(records.frame["raw_genres"]),
            COL_YEAR: pd.array(years, dtype="Int64"),
        }
    )


def _read_ml1m_users(folder: Path) -> pd.DataFrame:
    records = read_records(
        folder / "users.dat",
        sep="::",
        encoding="latin-1",
        names=[COL_USER, COL_GENDER, COL_AGE, "occupation_code", COL_ZIP_CODE],
        line_format="UserID::Gender::Age::Occupation::Zip-code",
    )
    _strip_ids(records, COL_USER)
    check_unique(records, COL_USER, label="user id")
    codes = numeric_column(records, "occupation_code", integer=True, label="occupation")
    unknown = ~codes.isin(list(ML_1M_OCCUPATIONS)).to_numpy()
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise DataError(
            f"{records.where(row)}: occupation code {codes.iloc[row]} is not one of 0-20 "
            f"(file {records.path})"
        )
    return pd.DataFrame(
        {
            COL_USER: records.frame[COL_USER],
            # ml-1m stores the lower bound of an age band (1 = under 18, 18 = 18-24, ..., 56 = 56+).
            COL_AGE: numeric_column(records, COL_AGE, integer=True),
            COL_GENDER: records.frame[COL_GENDER].str.strip(),
            COL_OCCUPATION: codes.map(ML_1M_OCCUPATIONS),
            COL_ZIP_CODE: records.frame[COL_ZIP_CODE].str.strip(),
        }
    )


def load_movielens_1m(
    path: str | os.PathLike | None = None,
    *,
    download: bool = True,
    verify: bool = True,
    url: str = ML_1M_URL,
) -> Dataset:
    """Load MovieLens 1M (6040 users, 3706 rated films, 1,000,209 ratings).

    Reads ``movies.dat``, ``users.dat`` and ``ratings.dat`` (``::``-separated,
    Latin-1) from the folder found as for :func:`load_movielens_100k`
    (``ml-1m/`` or ``ml-1m.zip``). Items get ``title`` without the year,
    ``year`` and ``genres`` (the ``|``-separated names). Users keep
    ``gender``, ``age`` (the band's lower bound, as in the file) and
    ``occupation`` (the code's name from the ml-1m README) and ``zip_code``.

    Args:
        path (path-like, optional): Folder with ``ratings.dat``, a folder
            containing ``ml-1m/`` or ``ml-1m.zip``, or the zip itself.
        download (bool): Download the official zip when nothing is found.
        verify (bool): Check an archive's SHA-256 against ``ARCHIVE_SHA256``.
        url (str): Archive URL; tests point it at a local server.

    Returns:
        Dataset: ``name="ml-1m"``, ratings as ``event="rating"``.

    Raises:
        DatasetNotFoundError, DownloadError, ChecksumError, DataError: as for
        :func:`load_movielens_100k`.

    Note:
        Duplicate (user, item, timestamp) ratings are dropped with a logged
        warning by :func:`~vidrec_lab.tables.validate_interactions`.
    """
    started = time.perf_counter()
    folder, info = _resolve_folder("ml-1m", path, marker="ratings.dat", url=url, download=download, verify=verify)
    items = _read_ml1m_items(folder)
    users = _read_ml1m_users(folder)
    records = read_records(
        folder / "ratings.dat",
        sep="::",
        encoding="latin-1",
        names=[COL_USER, COL_ITEM, "rating", COL_TIMESTAMP],
        line_format="UserID::MovieID::Rating::Timestamp",
    )
    _strip_ids(records, COL_USER, COL_ITEM)
    check_known(records, COL_ITEM, set(items[COL_ITEM]), label="movie id", known_from="movies.dat")
    check_known(records, COL_USER, set(users[COL_USER]), label="user id", known_from="users.dat")
    interactions = _ratings_frame(records, user=COL_USER, item=COL_ITEM, rating="rating", timestamp=COL_TIMESTAMP)
    return _make_dataset("ml-1m", folder, items, users, interactions, info, started)


# ---------------------------------------------------------------------------
# MovieLens latest-small
# ---------------------------------------------------------------------------


def _read_latest_items(folder: Path) -> pd.DataFrame:
    records = read_records(
        folder / "movies.csv",
        sep=",",
        encoding="utf-8-sig",
        header=["movieId", "title", "genres"],
        quoted=True,
        line_format="movieId,title,genres",
    )
    _strip_ids(records, "movieId")
    check_unique(records, "movieId", label="movieId")
    titles, years = _titles_and_years(records.frame["title"])
    items = pd.DataFrame(
        {
            COL_ITEM: records.frame["movieId"],
            COL_TITLE: titles,
            COL_GENRES: _split_genres(records.frame["genres"]),
            COL_YEAR: pd.array(years, dtype="Int64"),
        }
    )

    links_path = folder / "links.csv"
    if links_path.is_file():
        links = read_records(
            links_path, sep=",", encoding="utf-8-sig", header=["movieId", "imdbId", "tmdbId"], quoted=True
        )
        _strip_ids(links, "movieId")
        check_known(links, "movieId", set(items[COL_ITEM]), label="movieId", known_from="movies.csv")
        # imdbId keeps its leading zeros ("0114709"), so ids stay strings.
        table = links.frame.set_index("movieId")
        imdb = items[COL_ITEM].map(table["imdbId"].str.strip()).astype(object)
        tmdb = items[COL_ITEM].map(table["tmdbId"].str.strip()).astype(object)
        items[COL_IMDB_ID] = imdb.where(imdb.fillna("") != "", None)
        items[COL_TMDB_ID] = tmdb.where(tmdb.fillna("") != "", None)
    return items


def _read_latest_tags(folder: Path, items: pd.DataFrame) -> list[list[str]] | None:
    path = folder / "tags.csv"
    if not path.is_file():
        return None
    records = read_records(
        path, sep=",", encoding="utf-8-sig", header=["userId", "movieId", "tag", "timestamp"], quoted=True
    )
    _strip_ids(records, "movieId")
    check_known(records, "movieId", set(items[COL_ITEM]), label="movieId", known_from="movies.csv")
    timestamps = numeric_column(records, "timestamp", integer=True)
    order = np.argsort(timestamps.to_numpy(), kind="stable")
    by_item: dict[str, list[str]] = {}
    seen: dict[str, set[str]] = {}
    # Each film keeps its distinct tags (case-insensitive) in the order users first wrote them.
    for row in order:
        item = records.frame["movieId"].iloc[row]
        tag = records.frame["tag"].iloc[row].strip()
        key = tag.casefold()
        if not tag or key in seen.setdefault(item, set()):
            continue
        seen[item].add(key)
        by_item.setdefault(item, []).append(tag)
    return [by_item.get(item, []) for item in items[COL_ITEM]]


def load_movielens_latest_small(
    path: str | os.PathLike | None = None,
    *,
    download: bool = True,
    verify: bool = True,
    url: str = ML_LATEST_SMALL_URL,
) -> Dataset:
    """Load MovieLens latest-small (about 600 users, 9700 films, 100,000 ratings in the 2018 release).

    Reads ``movies.csv`` (``|``-separated genres) and ``ratings.csv``
    (UTF-8, with headers) from the folder found as for
    :func:`load_movielens_100k` (``ml-latest-small/`` or
    ``ml-latest-small.zip``). When present, ``tags.csv`` fills item ``tags``
    (each film's distinct tags in the order they were first written) and
    ``links.csv`` adds ``imdb_id`` and ``tmdb_id``. ``"(no genres listed)"``
    becomes an empty genre list. The source has no user attributes, so the
    user table contains only the ids of users with ratings.

    Args:
        path (path-like, optional): Folder with ``ratings.csv``, a folder
            containing ``ml-latest-small/`` or its zip, or the zip itself.
        download (bool): Download the official zip when nothing is found.
        verify (bool): Check an archive's SHA-256 against ``ARCHIVE_SHA256``.
        url (str): Archive URL; tests point it at a local server.

    Returns:
        Dataset: ``name="ml-latest-small"``, ratings (half stars) as ``event="rating"``.

    Raises:
        DatasetNotFoundError, DownloadError, ChecksumError, DataError: as for
        :func:`load_movielens_100k`.

    Note:
        Duplicate (user, item, timestamp) ratings are dropped with a logged
        warning by :func:`~vidrec_lab.tables.validate_interactions`.
    """
    started = time.perf_counter()
    folder, info = _resolve_folder(
        "ml-latest-small", path, marker="ratings.csv", url=url, download=download, verify=verify
    )
    items = _read_latest_items(folder)
    tags = _read_latest_tags(folder, items)
    if tags is not None:
        items[COL_TAGS] = tags
    records = read_records(
        folder / "ratings.csv",
        sep=",",
        encoding="utf-8-sig",
        header=["userId", "movieId", "rating", "timestamp"],
        quoted=True,
        line_format="userId,movieId,rating,timestamp",
    )
    _strip_ids(records, "userId", "movieId")
    check_known(records, "movieId", set(items[COL_ITEM]), label="movieId", known_from="movies.csv")
    interactions = _ratings_frame(records, user="userId", item="movieId", rating="rating", timestamp="timestamp")
    user_ids = sorted(interactions[COL_USER].unique(), key=lambda u: (len(u), u))
    users = pd.DataFrame({COL_USER: user_ids})
    info["tags"] = "tags.csv" if tags is not None else "none: no tags.csv"
    return _make_dataset("ml-latest-small", folder, items, users, interactions, info, started)
