"""MicroLens loader: micro-video captions, hashtags, optional videos, covers and interactions.

The official MicroLens-50k layout (https://github.com/westlake-repl/MicroLens):

* ``MicroLens-50k_titles.csv``: columns ``item,title``; the title is a caption
  machine-translated from Chinese, with ``#hashtag`` parts;
* ``MicroLens-50k_pairs.csv`` (optional): columns ``userID,videoID,timestamp``;
* ``MicroLens-50k_pairs.tsv`` (optional): a user id, a TAB, then the user's
  video ids in time order separated by single spaces;
* ``videos/<item>.mp4`` and ``covers/<item>.jpg`` (optional).

Captions are split into the text before the first ``#`` (the item ``title``)
and the hashtags (the item ``tags``). Each ``#`` starts a tag that runs to
the next ``#`` or the end of the caption, so both ``"# comic # Two Yuan"``
and ``"#搞笑#美食"`` give two tags. The caption as in the file stays in the
extra ``caption`` column.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from vidrec_lab.constants import (
    COL_COVER_PATH,
    COL_EVENT,
    COL_ITEM,
    COL_TAGS,
    COL_TIMESTAMP,
    COL_TITLE,
    COL_USER,
    COL_VALUE,
    COL_VIDEO_PATH,
    EVENT_VIEW,
)
from vidrec_lab.datasets._paths import (
    DatasetNotFoundError,
    Records,
    check_known,
    check_unique,
    format_searched,
    locate_dataset,
    numeric_column,
    read_records,
    raw_data_dir,
)
from vidrec_lab.tables import DataError, Dataset

logger = logging.getLogger(__name__)

MICROLENS_PAGE = "https://github.com/westlake-repl/MicroLens"
TITLES_FILE = "MicroLens-50k_titles.csv"
PAIRS_CSV_FILE = "MicroLens-50k_pairs.csv"
PAIRS_TSV_FILE = "MicroLens-50k_pairs.tsv"
VIDEOS_FOLDER = "videos"
COVERS_FOLDER = "covers"
# Names the MicroLens folder may have inside VIDREC_LAB_DATA or data/raw.
FOLDER_NAMES = ("microlens", "MicroLens-50k", "microlens-sample")

# Extra item column: the caption exactly as in the titles file.
COL_CAPTION = "caption"

# Timestamps above this cannot be seconds (it is the year 5138), so they are milliseconds.
_MILLISECONDS_THRESHOLD = 10**11
_WHITESPACE = re.compile(r"\s+")


def split_caption(caption: str) -> tuple[str, list[str]]:
    """Split a MicroLens caption into its text and its hashtags.

    The text is everything before the first ``#``. Each ``#`` starts a tag
    that runs to the next ``#`` or the end. Tags are stripped of spaces, and
    empty ones (from ``"#tag#"``) are dropped. A caption that starts with
    ``#`` has no text before its first tag, so its text is the whole caption
    without the ``#`` signs. That way every item with a caption has a title.

    Args:
        caption (str): Caption as in ``MicroLens-50k_titles.csv``.

    Returns:
        tuple: (text, tags), e.g. for ``"Gu long song gaga bad. # comic # Two Yuan"``
        ``("Gu long song gaga bad.", ["comic", "Two Yuan"])``.

    Note:
        A hashtag written inside the sentence (``"I love #cats and dogs"``)
        takes the rest of the sentence up to the next ``#`` as its tag, because
        the translated captions do not mark where a tag ends.
    """
    head, sep, rest = caption.partition("#")
    tags = [_WHITESPACE.sub(" ", part).strip() for part in rest.split("#")] if sep else []
    tags = [tag for tag in tags if tag]
    text = _WHITESPACE.sub(" ", head).strip()
    if not text and sep:
        text = _WHITESPACE.sub(" ", caption.replace("#", " ")).strip()
    return text, tags


def _files_by_stem(folder: Path, suffix: str) -> dict[str, str]:
    """Map file stem -> absolute path for the files with ``suffix`` in ``folder`` (one directory scan)."""
    if not folder.is_dir():
        return {}
    found = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file() and entry.name.lower().endswith(suffix):
                found[entry.name[: -len(suffix)]] = str(Path(entry.path).resolve())
    return found


def _read_titles(folder: Path, max_items: int | None) -> tuple[pd.DataFrame, int]:
    records = read_records(
        folder / TITLES_FILE,
        sep=",",
        encoding="utf-8-sig",
        header=["item", "title"],
        quoted=True,
        line_format="item,title",
    )
    records.frame["item"] = records.frame["item"].str.strip()
    check_unique(records, "item", label="item")
    empty = (records.frame["item"] == "").to_numpy()
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise DataError(f"{records.where(row)}: the item id is empty (file {records.path})")

    frame = records.frame
    if max_items is not None:
        frame = frame.iloc[:max_items]
    pairs = [split_caption(caption) for caption in frame["title"]]
    titles = [text for text, _ in pairs]
    from_tags = sum(1 for caption in frame["title"] if caption.lstrip().startswith("#"))

    ids = frame["item"].tolist()
    videos = _files_by_stem(folder / VIDEOS_FOLDER, ".mp4")
    covers = _files_by_stem(folder / COVERS_FOLDER, ".jpg")
    items = pd.DataFrame(
        {
            COL_ITEM: ids,
            COL_TITLE: titles,
            COL_TAGS: [tags for _, tags in pairs],
            COL_VIDEO_PATH: [videos.get(item) for item in ids],
            COL_COVER_PATH: [covers.get(item) for item in ids],
            COL_CAPTION: frame["title"].tolist(),
        }
    )
    return items, from_tags


def _read_pairs_csv(path: Path) -> tuple[Records, pd.DataFrame, str]:
    records = read_records(
        path, sep=",", encoding="utf-8-sig", header=["userID", "videoID", "timestamp"], quoted=True,
        line_format="userID,videoID,timestamp",
    )
    records.frame["userID"] = records.frame["userID"].str.strip()
    records.frame["videoID"] = records.frame["videoID"].str.strip()
    timestamps = numeric_column(records, "timestamp", integer=True)
    note = f"{path.name}: {len(records.frame)} rows with timestamps in seconds"
    if len(timestamps) and int(timestamps.max()) > _MILLISECONDS_THRESHOLD:
        timestamps = timestamps // 1000
        note = f"{path.name}: {len(records.frame)} rows; timestamps were milliseconds and are converted to seconds"
    interactions = pd.DataFrame(
        {
            COL_USER: records.frame["userID"].to_numpy(),
            COL_ITEM: records.frame["videoID"].to_numpy(),
            COL_TIMESTAMP: timestamps.to_numpy(),
            COL_EVENT: EVENT_VIEW,
            COL_VALUE: 1.0,
        }
    )
    return records, interactions, note


def _read_pairs_tsv(path: Path) -> tuple[Records, pd.DataFrame, str]:
    lines = read_records(path, sep="\t", encoding="utf-8-sig", names=["userID", "videos"], line_format="user id<TAB>video ids")
    users: list[str] = []
    videos: list[str] = []
    positions: list[int] = []
    line_numbers: list[int] = []
    for row, (user, sequence) in enumerate(zip(lines.frame["userID"], lines.frame["videos"])):
        user = user.strip()
        sequence = sequence.split()
        if not user or not sequence:
            raise DataError(
                f"{lines.where(row)}: expected a user id, a TAB and at least one video id (file {path})"
            )
        users.extend([user] * len(sequence))
        videos.extend(sequence)
        positions.extend(range(len(sequence)))
        line_numbers.extend([lines.line_of(row)] * len(sequence))
    # One record per (user, video) so later checks can still name the line.
    records = Records(
        path=path,
        columns=["userID", "videoID"],
        frame=pd.DataFrame({"userID": users, "videoID": videos}, dtype=object),
        line_numbers=np.asarray(line_numbers, dtype=np.int64),
    )
    interactions = pd.DataFrame(
        {
            COL_USER: users,
            COL_ITEM: videos,
            # The file gives only the order, so each user's n-th video gets timestamp n.
            COL_TIMESTAMP: np.asarray(positions, dtype=np.int64),
            COL_EVENT: EVENT_VIEW,
            COL_VALUE: 1.0,
        }
    )
    note = (
        f"{path.name}: {len(interactions)} views; timestamps are synthesized as each user's position "
        "in the sequence (0, 1, 2, ...), so only the order within a user is real and times are "
        "not comparable across users"
    )
    return records, interactions, note


def _read_interactions(folder: Path, items: pd.DataFrame, *, limited: bool) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    csv_path, tsv_path = folder / PAIRS_CSV_FILE, folder / PAIRS_TSV_FILE
    if csv_path.is_file():
        if tsv_path.is_file():
            logger.info("microlens: both %s and %s exist; using the CSV for its real timestamps", csv_path.name, tsv_path.name)
        records, interactions, note = _read_pairs_csv(csv_path)
    elif tsv_path.is_file():
        records, interactions, note = _read_pairs_tsv(tsv_path)
    else:
        note = f"none: no {PAIRS_CSV_FILE} or {PAIRS_TSV_FILE} in {folder}"
        logger.info("microlens: %s; the data set has items only", note)
        empty = pd.DataFrame(
            {
                COL_USER: pd.Series([], dtype=str),
                COL_ITEM: pd.Series([], dtype=str),
                COL_TIMESTAMP: pd.Series([], dtype="int64"),
                COL_EVENT: pd.Series([], dtype=str),
                COL_VALUE: pd.Series([], dtype="float64"),
            }
        )
        return empty, pd.DataFrame({COL_USER: pd.Series([], dtype=str)}), note

    known = set(items[COL_ITEM])
    if limited:
        keep = records.frame["videoID"].isin(known).to_numpy()
        dropped = int((~keep).sum())
        if dropped:
            logger.info("microlens: max_items drops %d interactions with items beyond the limit", dropped)
            note += f"; {dropped} rows with items beyond max_items dropped"
        interactions = interactions.loc[keep].reset_index(drop=True)
    else:
        check_known(records, "videoID", known, label="video id", known_from=TITLES_FILE)

    user_ids = sorted(interactions[COL_USER].unique(), key=lambda user: (len(user), user))
    return interactions, pd.DataFrame({COL_USER: user_ids}), note


def load_microlens(path: str | os.PathLike | None = None, *, max_items: int | None = None) -> Dataset:
    """Load a MicroLens-50k folder: items from the titles file, views from the pairs file if any.

    The folder is searched for in this order:

    1. ``path``;
    2. the ``VIDREC_LAB_DATA`` folder: the MicroLens folder itself, or a
       folder containing ``microlens/``, ``MicroLens-50k/`` or
       ``microlens-sample/``;
    3. ``<project_home>/data/raw/microlens`` (or the other two names).

    Nothing is downloaded, because the official files are hosted behind
    manual download links.

    Items get ``title`` (the caption text without hashtags), ``tags`` (the
    hashtags, see :func:`split_caption`) and ``caption`` (as in the file).
    ``video_path`` is set only where ``videos/<item>.mp4`` exists, and
    ``cover_path`` only where ``covers/<item>.jpg`` exists. Interactions are ``event="view"``,
    ``value=1.0``. Without a pairs file the interaction and user tables are
    empty and ``info["interactions"]`` says so.

    Args:
        path (path-like, optional): MicroLens folder, or a folder containing one.
        max_items (int, optional): Keep only the first ``max_items`` items of
            the titles file (for smoke runs); views of other items are dropped.

    Returns:
        Dataset: ``name="microlens"``; ``info`` records the folder, the
        source of the interactions and the number of videos and covers found.

    Raises:
        DatasetNotFoundError: when no folder with ``MicroLens-50k_titles.csv``
            is found (the message lists the places searched).
        DataError: on a malformed file, a repeated item id or (without
            ``max_items``) a pairs line whose video id is not in the titles file.
    """
    if max_items is not None and (not isinstance(max_items, (int, np.integer)) or max_items < 1):
        raise ValueError(f"max_items must be a positive integer or None; got {max_items!r}")
    started = time.perf_counter()
    location = locate_dataset(path, marker=TITLES_FILE, folder_names=FOLDER_NAMES)
    if location.folder is None:
        raise DatasetNotFoundError(
            f"microlens: missing file {TITLES_FILE}; searched {format_searched(location) or 'nothing'}. "
            f"Download MicroLens-50k from {MICROLENS_PAGE} and put its files in "
            f"{raw_data_dir() / FOLDER_NAMES[0]}, or pass path= the folder that contains {TITLES_FILE}"
        )
    folder = location.folder

    items, from_tags = _read_titles(folder, max_items)
    interactions, users, note = _read_interactions(folder, items, limited=max_items is not None)
    info = {
        "folder": str(folder),
        "interactions": note,
        "videos": int(items[COL_VIDEO_PATH].notna().sum()),
        "covers": int(items[COL_COVER_PATH].notna().sum()),
        "titles_from_hashtags": from_tags,
        "max_items": max_items,
    }
    dataset = Dataset("microlens", items, users, interactions, source=str(folder), info=info)
    logger.info(
        "microlens: %d items (%d with video), %d users, %d views from %s in %.2f s",
        len(dataset.items),
        info["videos"],
        len(dataset.users),
        len(dataset.interactions),
        folder,
        time.perf_counter() - started,
    )
    return dataset
