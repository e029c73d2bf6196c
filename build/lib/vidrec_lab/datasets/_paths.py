"""Locate raw data sets on disk and read their text files with file and line context.

Every loader searches the same places, in this order:

1. the ``path`` argument (a data set folder, a folder that contains it, or an
   archive); when given, nothing else is searched;
2. the folder named by the ``VIDREC_LAB_DATA`` environment variable (the data
   set folder itself, or a folder that contains it or its archive), then that
   folder's parent, so pointing it at ``datasets/ml-100k`` also finds
   ``datasets/microlens-sample``;
3. ``<project_home>/data/raw`` (a folder that contains the data set folder or
   its archive).

The readers turn every parsing problem into a :class:`~vidrec_lab.tables.DataError`
that names the file and the line, so a user never sees a bare pandas traceback.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vidrec_lab.config import project_home
from vidrec_lab.constants import ENV_DATA
from vidrec_lab.tables import DataError

logger = logging.getLogger(__name__)


class DatasetNotFoundError(DataError, FileNotFoundError):
    """Raised when a data set folder, archive or one of its files is missing.

    It is both a :class:`~vidrec_lab.tables.DataError` and a
    :class:`FileNotFoundError`, so callers may catch either.
    """


@dataclass(frozen=True)
class Location:
    """Result of a data set search: the folder or archive found, and the places searched.

    Attributes:
        folder (pathlib.Path or None): Extracted data set folder, when one was found.
        archive (pathlib.Path or None): Archive to extract, when no folder was found.
        explicit (bool): True when the location came from the ``path`` argument.
        searched (list of pathlib.Path): Every place looked at, for messages.
    """

    folder: Path | None
    archive: Path | None
    explicit: bool
    searched: list[Path] = field(default_factory=list)


def raw_data_dir() -> Path:
    """Return ``<project_home>/data/raw`` (not created here)."""
    return project_home() / "data" / "raw"


def env_data_dir() -> Path | None:
    """Return the folder named by ``VIDREC_LAB_DATA``, or None when the variable is unset or empty."""
    value = os.environ.get(ENV_DATA, "").strip()
    if not value:
        return None
    return Path(value).expanduser().resolve()


def download_dir() -> Path:
    """Return the folder that receives downloaded archives.

    It is the ``VIDREC_LAB_DATA`` folder when that variable is set, else
    ``<project_home>/data/raw``, as ``data/README.md`` describes.
    """
    return env_data_dir() or raw_data_dir()


def _search_base(
    base: Path, *, marker: str, folder_names: tuple[str, ...], archive_name: str | None
) -> tuple[Path | None, Path | None, list[Path]]:
    """Look for the data set in ``base`` and return (folder, archive, places searched)."""
    searched = [base]
    if base.is_file():
        if base.suffix.lower() == ".zip":
            return None, base, searched
        return None, None, searched
    if (base / marker).is_file():
        return base, None, searched
    for name in folder_names:
        candidate = base / name
        searched.append(candidate)
        if (candidate / marker).is_file():
            return candidate, None, searched
    if archive_name is not None:
        candidate = base / archive_name
        searched.append(candidate)
        if candidate.is_file():
            return None, candidate, searched
    return None, None, searched


def locate_dataset(
    path: str | os.PathLike | None,
    *,
    marker: str,
    folder_names: tuple[str, ...],
    archive_name: str | None = None,
) -> Location:
    """Find a data set folder or archive in the standard places.

    A folder counts as the data set when it contains ``marker`` (for example
    ``u.data``). An extracted folder wins over an archive in the same place.

    Args:
        path (path-like, optional): Explicit location. When given, only this
            place is searched.
        marker (str): File name that identifies the data set folder.
        folder_names (tuple of str): Names the data set folder may have inside
            a parent folder (``("ml-100k",)``).
        archive_name (str, optional): Archive file name (``"ml-100k.zip"``).

    Returns:
        Location: The folder or archive found (both None when nothing was
        found), and the places searched.
    """
    if path is not None:
        base = Path(path).expanduser().resolve()
        folder, archive, searched = _search_base(
            base, marker=marker, folder_names=folder_names, archive_name=archive_name
        )
        return Location(folder, archive, explicit=True, searched=searched)

    searched: list[Path] = []
    env = env_data_dir()
    # VIDREC_LAB_DATA often names one data set folder (``.../datasets/ml-100k``); its parent
    # then contains the others, so a loader for a sibling data set looks there next.
    env_parent = env.parent if env is not None and env.parent != env else None
    for base in (env, env_parent, raw_data_dir()):
        if base is None:
            continue
        folder, archive, places = _search_base(
            base, marker=marker, folder_names=folder_names, archive_name=archive_name
        )
        searched.extend(places)
        if folder is not None or archive is not None:
            if base is env_parent:
                # Said out loud, so a stray copy beside the configured folder is not used unnoticed.
                logger.info("found %s beside %s=%s, in its parent folder", folder or archive, ENV_DATA, env)
            return Location(folder, archive, explicit=False, searched=searched)
    return Location(None, None, explicit=False, searched=searched)


def format_searched(location: Location) -> str:
    """Return the searched places as one comma-separated string for messages."""
    return ", ".join(str(p) for p in location.searched)


# ---------------------------------------------------------------------------
# Text files with line numbers
# ---------------------------------------------------------------------------


@dataclass
class Records:
    """Rows of a delimited text file, all fields as strings.

    Attributes:
        path (pathlib.Path): File the rows came from.
        columns (list of str): Column names (the header or the names given).
        frame (pandas.DataFrame): One string column per field.
        line_numbers (numpy.ndarray): 1-based line of each row in the file, so
            later checks can point at the line.
    """

    path: Path
    columns: list[str]
    frame: pd.DataFrame
    line_numbers: np.ndarray

    def line_of(self, row: int) -> int:
        """Return the file line number of row ``row`` (0-based position)."""
        return int(self.line_numbers[row])

    def where(self, row: int) -> str:
        """Return ``"<file name> line <n>"`` for messages."""
        return f"{self.path.name} line {self.line_of(row)}"


def _decode(path: Path, data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path.name} line {line}: bytes {data[err.start:err.end]!r} are not valid {encoding}; "
            f"this file is expected to be {encoding}-encoded (file {path})"
        ) from err


# ASCII unit separator. It replaces a multi-character separator such as "::"
# so pandas' C parser can read the file, and MovieLens text never contains it.
_UNIT_SEPARATOR = b"\x1f"


def _parse_unquoted_fast(raw: bytes, sep: str, encoding: str, columns: list[str]) -> tuple[pd.DataFrame, np.ndarray] | None:
    """Parse an unquoted file with pandas' C parser, or return None when a line needs the careful reader.

    Separators are counted per line on the raw bytes, which is exact because
    newline and ASCII separator bytes never occur inside a multi-byte
    character in UTF-8 or Latin-1. A file without data lines, a line with
    the wrong count, a whitespace-only line, a lone ``\r`` line ending or
    undecodable text returns None, and the line-by-line reader then finds
    and reports the problem.
    """
    sep_bytes = sep.encode("ascii")
    if len(columns) < 2 or not raw:
        return None
    if len(sep_bytes) > 1:
        if _UNIT_SEPARATOR in raw:
            return None
        raw = raw.replace(sep_bytes, _UNIT_SEPARATOR)
        sep_bytes = _UNIT_SEPARATOR

    data = np.frombuffer(raw, dtype=np.uint8)
    ends = np.flatnonzero(data == ord("\n"))
    if data[-1] != ord("\n"):
        ends = np.append(ends, len(data))
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts
    first_bytes = data[np.minimum(starts, len(data) - 1)]
    blank = (lengths == 0) | ((lengths == 1) & (first_bytes == ord("\r")))
    counts = np.bincount(np.searchsorted(ends, np.flatnonzero(data == sep_bytes[0])), minlength=len(ends))
    if blank.all() or (counts[~blank] != len(columns) - 1).any():
        return None

    try:
        frame = pd.read_csv(
            io.BytesIO(raw),
            sep=sep_bytes.decode("ascii"),
            header=None,
            names=columns,
            index_col=False,
            dtype=str,
            na_filter=False,
            quoting=csv.QUOTE_NONE,
            encoding=encoding,
            skip_blank_lines=True,
            engine="c",
        )
    except (UnicodeDecodeError, pd.errors.ParserError):
        return None
    line_numbers = np.flatnonzero(~blank) + 1
    if len(frame) != len(line_numbers):
        return None
    return frame, line_numbers


def _split_lines(text: str, sep: str) -> tuple[list[list[str]], list[int]]:
    rows: list[list[str]] = []
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        rows.append(line.split(sep))
        lines.append(number)
    return rows, lines


def _split_csv(path: Path, text: str, sep: str) -> tuple[list[list[str]], list[int]]:
    rows: list[list[str]] = []
    lines: list[int] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    start = 1
    try:
        for row in reader:
            # reader.line_num is the line where the record ends; a quoted field
            # may span lines, so the record starts after the previous record's end.
            if row and any(value.strip() for value in row):
                rows.append(row)
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as err:
        raise DataError(f"{path.name} line {reader.line_num}: invalid CSV ({err}) (file {path})") from err
    return rows, lines


def read_records(
    path: Path,
    *,
    sep: str,
    encoding: str,
    names: list[str] | None = None,
    header: list[str] | None = None,
    quoted: bool = False,
    line_format: str = "",
) -> Records:
    """Read a delimited text file into string columns, checking its shape line by line.

    Blank lines are skipped. Exactly one of ``names`` (a file without a
    header) or ``header`` (the columns the header line must contain) is given.
    Every line must have as many fields as there are columns.

    Args:
        path (pathlib.Path): File to read.
        sep (str): Field separator (``"\\t"``, ``"|"``, ``"::"``, ``","``).
        encoding (str): Text encoding (``"latin-1"``, ``"utf-8-sig"``).
        names (list of str, optional): Column names of a file without a header.
        header (list of str, optional): Columns the header line must contain;
            extra header columns are kept.
        quoted (bool): Parse CSV quoting (fields with separators or line
            breaks inside quotes). Needs a one-character ``sep``.
        line_format (str): Fields of one line, for messages
            (``"user id<TAB>item id<TAB>rating<TAB>timestamp"``).

    Returns:
        Records: The rows and their line numbers.

    Raises:
        DatasetNotFoundError: when the file does not exist (the message names
            the file and its folder).
        DataError: on undecodable bytes, an empty file, a wrong header or a
            line with the wrong number of fields (the message names the file
            and the line).
    """
    if (names is None) == (header is None):
        raise ValueError("read_records: give exactly one of names= or header=")
    if not path.is_file():
        raise DatasetNotFoundError(f"missing file {path.name} in folder {path.parent}")

    raw = path.read_bytes()
    if not quoted and names is not None:
        fast = _parse_unquoted_fast(raw, sep, encoding, list(names))
        if fast is not None:
            frame, line_numbers = fast
            return Records(path=path, columns=list(names), frame=frame, line_numbers=line_numbers)

    text = _decode(path, raw, encoding)
    if quoted:
        rows, lines = _split_csv(path, text, sep)
    else:
        rows, lines = _split_lines(text, sep)
    content = f" ({line_format})" if line_format else ""

    if header is not None:
        if not rows:
            raise DataError(f"{path} is empty; expected a header line {sep.join(header)} and data lines")
        columns = [c.strip() for c in rows[0]]
        missing = [c for c in header if c not in columns]
        if missing:
            raise DataError(
                f"{path.name} line {lines[0]}: header {columns} lacks column(s) {missing}; "
                f"expected a header with {header} (file {path})"
            )
        rows, lines = rows[1:], lines[1:]
    else:
        columns = list(names)

    if not rows:
        raise DataError(f"{path} is empty; expected lines of {len(columns)} fields{content}")

    width = len(columns)
    for row, line in zip(rows, lines):
        if len(row) != width:
            raise DataError(
                f"{path.name} line {line}: expected {width} fields separated by {sep!r}{content}, "
                f"found {len(row)} in {sep.join(row)[:120]!r} (file {path})"
            )

    values = list(zip(*rows))
    frame = pd.DataFrame({name: pd.Series(column, dtype=str) for name, column in zip(columns, values)})
    return Records(path=path, columns=columns, frame=frame, line_numbers=np.asarray(lines, dtype=np.int64))


def numeric_column(records: Records, column: str, *, integer: bool, label: str | None = None) -> pd.Series:
    """Convert a string column of ``records`` to numbers, naming the first bad line.

    Args:
        records (Records): Rows read by :func:`read_records`.
        column (str): Column to convert.
        integer (bool): Require whole numbers (returned as int64).
        label (str, optional): Name of the field in messages; default ``column``.

    Returns:
        pandas.Series: int64 or float64 values.

    Raises:
        DataError: naming file, line and value of the first entry that is not
            a number (or not a whole number when ``integer`` is set).
    """
    label = label or column
    raw = records.frame[column]
    try:
        fast = raw.to_numpy(dtype=object).astype(np.int64 if integer else np.float64)
    except (ValueError, TypeError, OverflowError):
        # Not every entry converts directly ("5.0" as an integer, or a typo);
        # the checks below accept the former and name the line of the latter.
        fast = None
    if fast is not None and (integer or np.isfinite(fast).all()):
        return pd.Series(fast, index=raw.index)

    values = pd.to_numeric(raw.str.strip(), errors="coerce")
    bad = values.isna().to_numpy()
    if integer:
        bad = bad | ((values.fillna(0).to_numpy(dtype=float) % 1) != 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        kind = "a whole number" if integer else "a number"
        raise DataError(f"{records.where(row)}: {label} {raw.iloc[row]!r} is not {kind} (file {records.path})")
    return values.astype("int64") if integer else values.astype("float64")


def check_unique(records: Records, column: str, *, label: str) -> None:
    """Raise :class:`DataError` naming the line of the first repeated value in ``column``."""
    duplicated = records.frame[column].duplicated().to_numpy()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        raise DataError(
            f"{records.where(row)}: {label} {records.frame[column].iloc[row]!r} appears more than once; "
            f"ids must be unique (file {records.path})"
        )


def check_known(records: Records, column: str, known: set[str], *, label: str, known_from: str) -> None:
    """Raise :class:`DataError` naming the first line whose ``column`` value is not in ``known``."""
    unknown = ~records.frame[column].isin(known).to_numpy()
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise DataError(
            f"{records.where(row)}: unknown {label} {records.frame[column].iloc[row]!r}, not in {known_from} "
            f"({int(unknown.sum())} lines with unknown {label}s in all; file {records.path})"
        )
