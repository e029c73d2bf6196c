"""Tiny MovieLens folders and archives in the three official formats, written by the tests.

The contents are small enough to check every parsed value by hand; the
expected values sit beside each writer.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

# ml-100k: four genres, so every u.item line has 5 + 4 fields.
ML100K_GENRE = "unknown|0\nAction|1\nComedy|2\nDrama|3\n\n"
ML100K_ITEM = (
    "1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|0|0|1|0\n"
    "2|Usual Suspects, The (1995)|14-Aug-1995||http://us.imdb.com/M/title-exact?Usual%20Suspects|0|1|0|1\n"
    "3|Misérables, Les (1995)|01-Jan-1995||http://us.imdb.com/Title?Mis%E9rables|0|0|0|1\n"
    "4|Land Before Time III (1995) (V)|01-Jan-1995|||0|0|1|0\n"
    "5|Old Film|27-Jun-1962|||0|0|0|1\n"
    "6|unknown||||1|0|0|0\n"
)
ML100K_USER = "1|24|M|technician|85711\n2|53|F|other|94043\n3|33|F|writer|T8H1N\n"
ML100K_DATA = (
    "1\t1\t5\t881250949\n"
    "1\t2\t3\t881250950\n"
    "2\t3\t4\t881250951\n"
    "3\t4\t1\t881250952\n"
    "2\t1\t2\t881250953\n"
)
ML100K_OCCUPATION = "other\ntechnician\nwriter\n"
ML100K_INFO = "3 users\n6 items\n5 ratings\n"

ML100K_FILES = {
    "u.genre": ML100K_GENRE,
    "u.item": ML100K_ITEM,
    "u.user": ML100K_USER,
    "u.data": ML100K_DATA,
    "u.occupation": ML100K_OCCUPATION,
    "u.info": ML100K_INFO,
}


def write_ml100k(folder: Path, **overrides: str | None) -> Path:
    """Write the tiny ml-100k files (Latin-1) into ``folder``.

    ``overrides`` maps a file name to new text, or to None to leave the file
    out: ``write_ml100k(folder, **{"u.data": "..."})``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    files = {**ML100K_FILES, **overrides}
    for name, text in files.items():
        if text is not None:
            (folder / name).write_bytes(text.encode("latin-1"))
    return folder


def file_sums(folder: Path, names) -> dict[str, str]:
    """Return SHA-256 sums of the named files in ``folder``."""
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in names}


def zip_folder(folder: Path, archive: Path, *, root: str, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """Zip every file of ``folder`` under ``<root>/`` inside ``archive``, like the official archives."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", compression=compression) as handle:
        for path in sorted(folder.iterdir()):
            handle.write(path, f"{root}/{path.name}")
    return archive


# ml-1m: "::"-separated, Latin-1.
ML1M_MOVIES = (
    "1::Toy Story (1995)::Animation|Children's|Comedy\n"
    "2::Misérables, Les (1995)::Drama|Musical\n"
    "3::Babylon 5::Sci-Fi\n"
)
ML1M_USERS = "1::F::1::10::48067\n2::M::56::16::70072\n"
ML1M_RATINGS = "1::1::5::978300760\n1::2::3::978302109\n2::3::4::978301968\n2::1::1::978301000\n"


def write_ml1m(folder: Path, **overrides: str | None) -> Path:
    """Write the tiny ml-1m files (Latin-1) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"movies.dat": ML1M_MOVIES, "users.dat": ML1M_USERS, "ratings.dat": ML1M_RATINGS, **overrides}
    for name, text in files.items():
        if text is not None:
            (folder / name).write_bytes(text.encode("latin-1"))
    return folder


# ml-latest-small: CSV with headers, UTF-8, quoted titles that contain commas.
LATEST_MOVIES = (
    "movieId,title,genres\n"
    "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
    '11,"American President, The (1995)",Comedy|Drama|Romance\n'
    '4973,"Amélie (Fabuleux destin d\'Amélie Poulain, Le) (2001)",Comedy|Romance\n'
    "6,Babylon 5,(no genres listed)\n"
)
LATEST_RATINGS = (
    "userId,movieId,rating,timestamp\n"
    "1,1,4.0,964982703\n"
    "1,11,3.5,964981247\n"
    "10,4973,5.0,964982224\n"
    "2,6,0.5,964983815\n"
)
LATEST_TAGS = (
    "userId,movieId,tag,timestamp\n"
    "2,1,pixar,1445714994\n"
    "2,1,Pixar,1445714995\n"
    "3,1,fun,1445714990\n"
    "2,4973,搞笑,1445714996\n"
)
LATEST_LINKS = "movieId,imdbId,tmdbId\n1,0114709,862\n11,0112346,9087\n4973,0211915,194\n6,0105946,\n"


def write_latest_small(folder: Path, **overrides: str | None) -> Path:
    """Write the tiny ml-latest-small files (UTF-8) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "movies.csv": LATEST_MOVIES,
        "ratings.csv": LATEST_RATINGS,
        "tags.csv": LATEST_TAGS,
        "links.csv": LATEST_LINKS,
        **overrides,
    }
    for name, text in files.items():
        if text is not None:
            (folder / name).write_text(text, encoding="utf-8")
    return folder
