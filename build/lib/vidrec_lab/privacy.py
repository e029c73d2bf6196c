"""Privacy tools: pseudonymous ids, a check for raw ids in written files, and DP-SGD training.

Three parts:

* **Pseudonymous ids.** :func:`pseudonymize_table` replaces user ids with a
  keyed hash (HMAC-SHA256, truncated, prefixed ``u_``). The key comes from the
  ``VIDREC_LAB_PSEUDONYM_KEY`` environment variable, a key file named by
  ``VIDREC_LAB_PSEUDONYM_KEY_FILE``, or ``<home>/data/pseudonym.key`` (made by
  :func:`create_key_file`); it is never stored in code. With
  ``VIDREC_LAB_PSEUDONYMIZE=1``, :func:`export_table` pseudonymises tables
  before notebooks show or write them, and :func:`vidrec_lab.io.write_metrics`
  pseudonymises every record field named ``user_id``.
* **Leak check.** :func:`scan_for_raw_ids` lists the raw user ids that still
  appear in ``outputs/`` or ``figures/`` (see its docstring for what it reads).
* **Differential privacy.** :class:`DPTwoTowerRecommender` trains a two-tower
  model with DP-SGD through opacus, and :func:`privacy_utility_curve`
  measures NDCG@10 against the privacy budget epsilon.

Pseudonymisation is not anonymisation: the same user keeps the same
pseudonym across tables (that is what makes joins work), and attributes such
as age, occupation and zip code still single people out. Only differential
privacy bounds what a trained model reveals about one user.
"""

from __future__ import annotations

import base64
import binascii
import copy
import csv
import hashlib
import hmac
import io as _io
import json
import logging
import math
import os
import re
import secrets
import stat
import struct
import tempfile
import time
import warnings
import zlib
from dataclasses import asdict, dataclass, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from vidrec_lab.config import project_home
from vidrec_lab.constants import (
    COL_ITEM,
    COL_TIMESTAMP,
    COL_USER,
    DEFAULT_SEED,
    ENV_PSEUDONYMIZE,
    ENV_PSEUDONYM_KEY,
    ENV_PSEUDONYM_KEY_FILE,
)
from vidrec_lab.recommend import Recommender
from vidrec_lab.tables import DataError, MissingColumnsError, id_sort_key, require_columns

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- pseudonymous ids

DEFAULT_KEY_FILE = Path("data") / "pseudonym.key"  # relative to the project home
MIN_KEY_BYTES = 16  # 128 bits; shorter secrets can be guessed by brute force over the id space
KEY_FILE_BYTES = 32  # random bytes in a key file made by create_key_file
# 12 hex digits are 48 bits: two of a million ids collide with probability about 0.2%.
# pseudonymize_table raises on a collision, and a longer length fixes it.
DEFAULT_PSEUDONYM_LENGTH = 12
PREFIXES = {COL_USER: "u_", COL_ITEM: "i_"}
DEFAULT_PREFIX = "p_"  # for any other column
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


class PseudonymKeyError(RuntimeError):
    """Raised when pseudonymisation needs a key and none is configured, or the key is unusable."""


def enabled() -> bool:
    """Return True when ``VIDREC_LAB_PSEUDONYMIZE`` requests pseudonymous ids in everything written.

    Accepted values (any case): ``1``, ``true``, ``yes``, ``on`` turn it on;
    unset, empty, ``0``, ``false``, ``no``, ``off`` leave it off.

    Raises:
        ValueError: On any other value, so a typo never silently disables it.
    """
    value = os.environ.get(ENV_PSEUDONYMIZE, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"environment variable {ENV_PSEUDONYMIZE} is {os.environ[ENV_PSEUDONYMIZE]!r}; "
        f"expected one of {list(_TRUE)} (on) or {list(_FALSE[1:])} (off)"
    )


def default_key_path() -> Path:
    """Return ``<home>/data/pseudonym.key``, the key file used when no variable names a key."""
    return project_home() / DEFAULT_KEY_FILE


def create_key_file(path: str | os.PathLike | None = None, *, overwrite: bool = False) -> Path:
    """Write a new random key file readable by its owner only (mode 0600) and return its path.

    The file contains :data:`KEY_FILE_BYTES` bytes from :func:`secrets.token_bytes`
    as hex text. It is written to a temporary file and linked into place, so
    an existing key is never half overwritten.

    Args:
        path (path-like, optional): Target; default :func:`default_key_path`.
        overwrite (bool): Replace an existing key. Every pseudonym made with
            the old key changes, so this is off by default.

    Raises:
        FileExistsError: When the file exists and ``overwrite`` is False.
    """
    target = Path(path) if path is not None else default_key_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"pseudonym key file {target} already exists; pass overwrite=True to replace it "
            "(every pseudonym made with the old key will change)"
        )
    # mkstemp creates the file with mode 0600, so the key is never readable by others.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_bytes(KEY_FILE_BYTES).hex() + "\n")
        os.chmod(tmp, stat.S_IRUSR | stat.S_IWUSR)
        if overwrite:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)  # fails if another process created the file meanwhile
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    logger.info("created pseudonym key file %s (mode 0600)", target)
    return target


def _read_key_file(path: Path, source: str) -> bytes:
    if not path.is_file():
        raise PseudonymKeyError(f"pseudonym key file {path} (from {source}) does not exist; create it with privacy.create_key_file()")
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("pseudonym key file %s is readable by other users (mode %o); run chmod 600 on it", path, mode & 0o777)
    # Trailing whitespace is dropped so that an editor's final newline does not change the key.
    return path.read_bytes().strip()


def load_key(*, create: bool = False) -> bytes:
    """Return the pseudonymisation key.

    Looked up in this order: the ``VIDREC_LAB_PSEUDONYM_KEY`` variable (its
    UTF-8 bytes), the file named by ``VIDREC_LAB_PSEUDONYM_KEY_FILE``, then
    ``<home>/data/pseudonym.key``.

    Args:
        create (bool): When no key is configured, create ``<home>/data/pseudonym.key``
            with :func:`create_key_file` instead of raising.

    Raises:
        PseudonymKeyError: When no key is configured (the message lists the
            three ways to set one), a named key file is missing, or the key is
            shorter than :data:`MIN_KEY_BYTES` bytes.
    """
    if os.environ.get(ENV_PSEUDONYM_KEY):
        key, source = os.environ[ENV_PSEUDONYM_KEY].encode("utf-8"), f"environment variable {ENV_PSEUDONYM_KEY}"
    elif os.environ.get(ENV_PSEUDONYM_KEY_FILE):
        path = Path(os.environ[ENV_PSEUDONYM_KEY_FILE]).expanduser()
        key, source = _read_key_file(path, f"environment variable {ENV_PSEUDONYM_KEY_FILE}"), f"key file {path}"
    else:
        path = default_key_path()
        if not path.is_file():
            if not create:
                raise PseudonymKeyError(
                    "pseudonymisation needs a secret key and none is configured. Set "
                    f"{ENV_PSEUDONYM_KEY} to a secret of at least {MIN_KEY_BYTES} characters, set "
                    f"{ENV_PSEUDONYM_KEY_FILE} to the path of a key file, or create {path} with "
                    "vidrec_lab.privacy.create_key_file()"
                )
            create_key_file(path)
        key, source = _read_key_file(path, "the default location"), f"key file {path}"
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(
            f"the pseudonym key from {source} has {len(key)} bytes; use at least {MIN_KEY_BYTES} "
            "(create_key_file() writes a 32-byte random key)"
        )
    return key


def pseudonymize_id(value: Any, key: bytes, *, prefix: str = PREFIXES[COL_USER], length: int = DEFAULT_PSEUDONYM_LENGTH) -> str:
    """Return the pseudonym of one id: ``prefix`` + the first ``length`` hex digits of HMAC-SHA256.

    The prefix is part of the hashed message, so a user and an item with the
    same raw id get unrelated pseudonyms. The same id, key and prefix always
    give the same pseudonym.
    """
    _check_length(length)
    message = f"{prefix}\x1f{value}".encode("utf-8")
    return prefix + hmac.new(key, message, hashlib.sha256).hexdigest()[:length]


def _check_length(length: int) -> None:
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or not 4 <= length <= 64:
        raise ValueError(f"pseudonym length must be an integer from 4 to 64 hex digits; got {length!r}")


def _pseudonym_map(values: pd.Series, key: bytes, prefix: str, length: int, *, where: str, column: str) -> dict[str, str]:
    missing = values.isna().to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise DataError(f"{where}: column '{column}' is empty at row {row}; every row needs an id to pseudonymise")
    unique = pd.unique(values.astype(str))
    mapping = {raw: pseudonymize_id(raw, key, prefix=prefix, length=length) for raw in unique}
    if len(set(mapping.values())) < len(mapping):
        raise DataError(
            f"{where}: {len(mapping)} distinct '{column}' values give colliding pseudonyms at length {length}; "
            "pass a larger length"
        )
    return mapping


def pseudonymize_table(
    df: pd.DataFrame,
    columns: Sequence[str] = (COL_USER,),
    *,
    key: bytes | None = None,
    length: int = DEFAULT_PSEUDONYM_LENGTH,
    prefixes: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Return a copy of ``df`` with the ids in ``columns`` replaced by pseudonyms.

    An index whose name is in ``columns`` is pseudonymised too. Ids are
    compared as strings, so ``196`` and ``"196"`` get the same pseudonym.

    Args:
        df (pandas.DataFrame): Table to export.
        columns (sequence of str): Id columns; each must be a column or the index name.
        key (bytes, optional): Secret key; default :func:`load_key`.
        length (int): Hex digits kept from the HMAC (4 to 64).
        prefixes (mapping, optional): Column -> prefix; default ``u_`` for
            ``user_id``, ``i_`` for ``item_id``, ``p_`` for other columns.

    Returns:
        pandas.DataFrame: The copy; ``df`` is not changed.

    Raises:
        MissingColumnsError: When a name in ``columns`` is neither a column nor the index name.
        DataError: On an empty id or colliding pseudonyms.
        PseudonymKeyError: When no key is given or configured.
    """
    where = "pseudonymize_table(df)"
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{where}: expected a pandas DataFrame, got {type(df).__name__}")
    in_columns = [c for c in columns if c in df.columns]
    missing = [c for c in columns if c not in df.columns and c != df.index.name]
    if missing:
        raise MissingColumnsError(f"{where}: missing column(s) {missing}; found {list(df.columns)} and index {df.index.name!r}")
    key = load_key() if key is None else key
    chosen = {**PREFIXES, **(prefixes or {})}
    out = df.copy()
    for column in in_columns:
        prefix = chosen.get(column, DEFAULT_PREFIX)
        mapping = _pseudonym_map(out[column], key, prefix, length, where=where, column=column)
        out[column] = out[column].astype(str).map(mapping)
    if df.index.name in columns:
        name = df.index.name
        index = pd.Series(out.index, dtype=object)
        mapping = _pseudonym_map(index, key, chosen.get(name, DEFAULT_PREFIX), length, where=where, column=f"index {name}")
        out.index = pd.Index(index.astype(str).map(mapping), name=name)
    return out


def export_table(df: pd.DataFrame, columns: Sequence[str] = (COL_USER,)) -> pd.DataFrame:
    """Return ``df`` ready to show or write: pseudonymised when :func:`enabled`, else unchanged.

    Notebooks call this on every table with user ids before displaying,
    plotting or saving it. Names in ``columns`` that the table lacks are
    skipped, so it is safe on any table.

    Raises:
        PseudonymKeyError: When pseudonymisation is on and no key is configured.
    """
    if not enabled():
        return df
    present = [c for c in columns if c in df.columns or c == df.index.name]
    if not present:
        return df
    return pseudonymize_table(df, present)


def export_id(value: Any, column: str = COL_USER) -> str:
    """Return one id ready to show (a figure title, a widget label): its pseudonym when :func:`enabled`, else ``str(value)``.

    It gives the same pseudonym as :func:`export_table` for the same id and column.

    Raises:
        PseudonymKeyError: When pseudonymisation is on and no key is configured.
    """
    if not enabled():
        return str(value)
    return pseudonymize_id(str(value), load_key(), prefix=PREFIXES.get(column, DEFAULT_PREFIX))


def pseudonymize_records(payload: Any, fields: Sequence[str] = (COL_USER,), *, key: bytes | None = None) -> Any:
    """Return a copy of a JSON-like payload with the values of ``fields`` pseudonymised at any depth.

    Dicts, lists and tuples are walked; a field's value may be one id or a
    list of ids. :func:`vidrec_lab.io.write_metrics` calls this when
    :func:`enabled` is true.

    Raises:
        PseudonymKeyError: When no key is given or configured.
    """
    key = load_key() if key is None else key
    fields = set(fields)

    def walk(value: Any, field: str | None) -> Any:
        if isinstance(value, Mapping):
            # Inside an id field every value is an id: DataFrame.to_dict() stores a column as {row: id}.
            return {k: walk(v, str(k) if str(k) in fields else field) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v, field) for v in value]
        if field is not None and value is not None and not isinstance(value, (bool, float)):
            return pseudonymize_id(value, key, prefix=PREFIXES.get(field, DEFAULT_PREFIX))
        return value

    return walk(payload, None)


# --------------------------------------------------------------------------- leak check

_TEXT_SUFFIXES = {".txt", ".md", ".log", ".html", ".htm", ".svg", ".yaml", ".yml", ".py", ".tex", ".xml", ".rst", ".csv", ".tsv"}
_JSON_SUFFIXES = {".json", ".ipynb"}
# nbformat stores multi-line strings as lists of lines under these keys (and under MIME types).
_NOTEBOOK_TEXT_KEYS = {"source", "text"}
_ASCII_WORD = "0-9A-Za-z_"
# "user 42", "user_id=42", "user id: '42'", "userId 42": an id written right after the word user.
_FREE_TEXT_ID = re.compile(
    r"(?i)(?<![0-9A-Za-z])user(?:[ _-]?id)?(?![0-9A-Za-z])[\s:=#'\"(\[]{0,4}([^\s,;'\"()\[\]{}<>|]+)"
)
_NUMERIC_ID = re.compile(r"\d+")
_TOKEN = re.compile(r"\S+")
_USER_KEYED = re.compile(r"(?i)user")


class RawIdHit(NamedTuple):
    """A raw user id found in a file."""

    file: Path
    user_id: str


class _TableParser(HTMLParser):
    """Collect the tables of an HTML text as lists of rows of (is_header_row, cells)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[tuple[bool, list[str]]]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._colspan = 1
        self._in_head = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr" and self.tables:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
            span = dict(attrs).get("colspan") or "1"
            self._colspan = int(span) if span.isdigit() else 1

    def handle_endtag(self, tag):
        if tag == "thead":
            self._in_head = False
        elif tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.extend(["".join(self._cell).strip()] * max(self._colspan, 1))
            self._cell = None
        elif tag == "tr" and self._row is not None and self.tables:
            self.tables[-1].append((self._in_head, self._row))
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _html_table_cells(text: str, id_columns: set[str]) -> Iterator[str]:
    parser = _TableParser()
    parser.feed(text)
    for table in parser.tables:
        positions = {j for is_head, row in table if is_head for j, cell in enumerate(row) if cell in id_columns}
        # NOTE: body cells are matched by position; a MultiIndex body with rowspan shifts columns.
        for is_head, row in table:
            if not is_head:
                yield from (row[j] for j in positions if j < len(row))


def _plain_table_cells(text: str, id_columns: set[str]) -> Iterator[str]:
    """Yield cells under an id column in pandas' plain-text table and Series output."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped in id_columns:  # an index name on its own line: the rows below start with the id
            for below in lines[i + 1 :]:
                if not below.strip() or below.lstrip().startswith("["):
                    break
                yield below.split()[0]
            continue
        if re.match(r"Name: (\S+),", stripped) and stripped[6:].split(",")[0] in id_columns:
            for above in reversed(lines[:i]):  # a Series named user_id: the values end each line above
                if not above.strip():
                    break
                yield above.split()[-1]
            continue
        spans = [(m.start(), m.end()) for m in _TOKEN.finditer(line) if m.group() in id_columns]
        for start, end in spans:  # a column header: values sit right-aligned under it
            for below in lines[i + 1 :]:
                if not below.strip() or below.lstrip().startswith("["):
                    break
                for match in _TOKEN.finditer(below):
                    if match.start() < end and match.end() > start:
                        yield match.group()


def _csv_cells(text: str, id_columns: set[str], delimiter: str) -> Iterator[str]:
    rows = csv.reader(_io.StringIO(text), delimiter=delimiter)
    header = next(rows, [])
    positions = [j for j, name in enumerate(header) if name.strip() in id_columns]
    for row in rows:
        yield from (row[j] for j in positions if j < len(row))


class _IdMatcher:
    """Find raw ids in the text pieces of one file (see :func:`scan_for_raw_ids` for the rules)."""

    def __init__(self, user_ids: Iterable[Any], id_columns: Sequence[str]) -> None:
        self.ids = {str(u).strip() for u in user_ids if str(u).strip()}
        self.id_columns = set(id_columns)
        distinctive = sorted((i for i in self.ids if not _NUMERIC_ID.fullmatch(i)), key=len, reverse=True)
        self.token_pattern = None
        if distinctive:
            alternatives = "|".join(re.escape(i) for i in distinctive)
            # A preceding backslash is excluded too, so the escape \u0042 does not match the id u0042.
            self.token_pattern = re.compile(f"(?<![{_ASCII_WORD}\\\\])(?:{alternatives})(?![{_ASCII_WORD}])")

    def _known(self, candidates: Iterable[Any]) -> set[str]:
        found = set()
        for candidate in candidates:
            text = str(candidate).strip().strip("'\"").rstrip(".")
            if text in self.ids:
                found.add(text)
        return found

    def in_text(self, text: str) -> set[str]:
        found = set()
        if self.token_pattern is not None:
            found.update(m.group() for m in self.token_pattern.finditer(text))
        found |= self._known(m.group(1) for m in _FREE_TEXT_ID.finditer(text))
        if any(column in text for column in self.id_columns):
            found |= self._known(_plain_table_cells(text, self.id_columns))
            if "<table" in text:
                found |= self._known(_html_table_cells(text, self.id_columns))
        return found

    def in_json(self, value: Any, parent: str | None = None) -> set[str]:
        found: set[str] = set()
        if parent is not None and parent.startswith("image/") and parent != "image/svg+xml":
            # Base64 image data in a notebook output: short ids such as "u02" occur in it by
            # chance, so only the decoded PNG's text chunks are read, as for a PNG file.
            encoded = "".join(value) if isinstance(value, list) else value
            if not isinstance(encoded, str):
                return found
            try:
                data = base64.b64decode(encoded, validate=False)
            except (binascii.Error, ValueError) as error:
                raise ValueError(f"scan_for_raw_ids: output {parent!r} is not valid base64: {error}") from error
            return set().union(*(self.in_text(t) for t in _png_texts(data)))
        if isinstance(value, Mapping):
            columns = value.get("columns")
            if isinstance(columns, list) and isinstance(value.get("data"), list):  # pandas orient="split"
                positions = [j for j, c in enumerate(columns) if c in self.id_columns]
                rows = [r for r in value["data"] if isinstance(r, list)]
                found |= self._known(r[j] for r in rows for j in positions if j < len(r))
            if parent is not None and _USER_KEYED.search(parent):  # {"user_preferences": {"196": ...}}
                found |= self._known(value.keys())
            for key, item in value.items():
                key = str(key)
                if key in self.id_columns:
                    found |= self._known(self._scalars(item))
                if self.token_pattern is not None:
                    found.update(m.group() for m in self.token_pattern.finditer(key))
                found |= self.in_json(item, key)
        elif isinstance(value, list):
            multiline = parent in _NOTEBOOK_TEXT_KEYS or (parent is not None and "/" in parent)
            if multiline and value and all(isinstance(v, str) for v in value):
                found |= self.in_text("".join(value))
            else:
                for item in value:
                    found |= self.in_json(item, parent)
        elif isinstance(value, str):
            found |= self.in_text(value)
        return found

    @staticmethod
    def _scalars(value: Any) -> list:
        if isinstance(value, list):
            return [v for v in value if isinstance(v, (str, int)) and not isinstance(v, bool)]
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return [value]
        return []


def _pdf_literal(raw: bytes) -> bytes:
    """Decode the escapes of a PDF literal string body (without the outer parentheses)."""
    out = bytearray()
    i = 0
    while i < len(raw):
        char = raw[i]
        if char != 0x5C:  # backslash
            out.append(char)
            i += 1
            continue
        i += 1
        if i >= len(raw):
            break
        escaped = raw[i]
        simple = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("f"): 12}
        if escaped in simple:
            out.append(simple[escaped])
            i += 1
        elif 0x30 <= escaped <= 0x37:  # octal, up to three digits
            digits = re.match(rb"[0-7]{1,3}", raw[i : i + 3]).group()
            out.append(int(digits, 8) & 0xFF)
            i += len(digits)
        elif escaped in (10, 13):  # line continuation
            i += 1
        else:
            out.append(escaped)
            i += 1
    return bytes(out)


def _decode_pdf_string(data: bytes) -> str:
    if data.startswith(b"\xfe\xff"):
        return data[2:].decode("utf-16-be", errors="replace")
    # matplotlib's Type 42 fonts write two-byte codes equal to the Unicode code point.
    if len(data) >= 2 and len(data) % 2 == 0 and all(b == 0 for b in data[0::2]):
        return data.decode("utf-16-be", errors="replace")
    return data.decode("latin-1")


_PDF_STRING = re.compile(rb"\((?:\\.|[^\\()]|\((?:\\.|[^\\()])*\))*\)|(?<!<)<([0-9A-Fa-f\s]+)>(?!>)", re.S)
_PDF_TEXT_BLOCK = re.compile(rb"\bBT\b(.*?)\bET\b", re.S)
_PDF_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\nendstream", re.S)
_PDF_INFO_KEYS = (b"Title", b"Author", b"Subject", b"Keywords", b"Creator", b"Producer")


def _pdf_strings(chunk: bytes) -> list[str]:
    texts = []
    for match in _PDF_STRING.finditer(chunk):
        if match.group(1) is not None:
            hex_digits = re.sub(rb"\s", b"", match.group(1))
            raw = bytes.fromhex((hex_digits + b"0" * (len(hex_digits) % 2)).decode("ascii"))
        else:
            raw = _pdf_literal(match.group()[1:-1])
        texts.append(_decode_pdf_string(raw))
    return texts


def _pdf_texts(data: bytes) -> list[str]:
    """Return the text shown in a PDF's content streams (one string per BT/ET block) and its metadata."""
    texts = []
    for stream in _PDF_STREAM.finditer(data):
        body = stream.group(1)
        try:
            body = zlib.decompress(body)
        except zlib.error:
            pass  # not Flate-compressed: read it as it is
        for block in _PDF_TEXT_BLOCK.finditer(body):
            texts.append("".join(_pdf_strings(block.group(1))))
    outside = _PDF_STREAM.sub(b"", data)
    for key in _PDF_INFO_KEYS:
        for match in re.finditer(rb"/" + key + rb"\s*(\((?:\\.|[^\\()])*\)|<[0-9A-Fa-f\s]*>)", outside):
            texts.extend(_pdf_strings(match.group(1)))
    return texts


def _png_texts(data: bytes) -> list[str]:
    """Return the tEXt, zTXt and iTXt chunks of a PNG file (keyword and text)."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return []
    texts = []
    position = 8
    while position + 8 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"tEXt":
            texts.append(body.replace(b"\0", b" ").decode("latin-1"))
        elif kind == b"zTXt":
            keyword, _, rest = body.partition(b"\0")
            texts.append(keyword.decode("latin-1") + " " + zlib.decompress(rest[1:]).decode("latin-1"))
        elif kind == b"iTXt":
            keyword, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _, _, rest = rest.partition(b"\0")  # language tag
            _, _, text = rest.partition(b"\0")  # translated keyword
            text = zlib.decompress(text) if compressed else text
            texts.append(keyword.decode("latin-1") + " " + text.decode("utf-8", errors="replace"))
        elif kind == b"IEND":
            break
    return texts


def _file_hits(path: Path, matcher: _IdMatcher) -> tuple[set[str], bool]:
    """Return (ids found, whether the file was read)."""
    suffix = path.suffix.lower()
    data = path.read_bytes()
    if suffix == ".pdf":
        return set().union(*(matcher.in_text(t) for t in _pdf_texts(data))), True
    if suffix == ".png":
        return set().union(*(matcher.in_text(t) for t in _png_texts(data))), True
    if suffix not in _TEXT_SUFFIXES | _JSON_SUFFIXES and b"\0" in data[:8192]:
        return set(), False
    text = data.decode("utf-8", errors="replace")
    if suffix in _JSON_SUFFIXES:
        try:
            return matcher.in_json(json.loads(text)), True
        except json.JSONDecodeError:
            logger.warning("scan_for_raw_ids: %s is not valid JSON; scanned it as plain text", path)
    found = matcher.in_text(text)
    if suffix in (".csv", ".tsv"):
        found |= matcher._known(_csv_cells(text, matcher.id_columns, "," if suffix == ".csv" else "\t"))
    return found, True


def scan_for_raw_ids(
    folder: str | os.PathLike,
    user_ids: Iterable[Any],
    *,
    id_columns: Sequence[str] = (COL_USER,),
) -> list[RawIdHit]:
    """List the raw user ids that appear in the files under ``folder`` (recursively).

    MovieLens user ids are small integers, so a plain substring search would
    flag every number. Ids are therefore looked for in id contexts, and only
    ids with a non-digit character (``u0042``) are also looked for anywhere:

    * **Any id, in id contexts.** These are JSON values of a field in
      ``id_columns`` at any depth, also lists of ids and the columns of
      pandas' ``orient="split"``. Also the keys of a JSON object under a key
      that contains "user" (``{"user_preferences": {"196": ...}}``), and
      CSV/TSV cells under an id-column header. In HTML tables and in pandas'
      plain-text tables and Series (executed notebook outputs), the cells
      under an id-column header count. In any text, an id written right
      after the word "user" counts (``user 196``, ``user_id=196``,
      ``"user_id": "196"``).
    * **Ids with a non-digit character, anywhere.** As a whole token (not
      inside a longer run of ASCII letters, digits or ``_``, and not right
      after a backslash, so ``\\u0042`` escapes do not count) in every text
      piece read.

    What is read: text files (by suffix, or any file without a NUL byte in
    its first 8 KiB), JSON and executed notebooks (parsed, so escaped text
    is seen as written; an image output is decoded and read like a PNG
    file, since its base64 text holds short ids such as ``u02`` by chance), PDF files (strings shown in content streams, which
    may be Flate-compressed, plus the document-info metadata) and PNG files
    (tEXt, zTXt and iTXt metadata chunks).

    Not read: text drawn into PNG pixels (there is no OCR; every figure from
    :func:`vidrec_lab.viz.save_figure` also has a PDF twin that is read),
    PDF text from fonts whose codes are not Unicode (such as the subsetted
    CJK fallback font) or drawn as paths, and other binary files (``.npz``,
    ``.parquet``, ``.pt``), which are logged as skipped.

    Args:
        folder (path-like): Folder to scan, usually ``outputs/`` or ``figures/``.
        user_ids (iterable): The raw user ids that must not appear.
        id_columns (sequence of str): Column and field names that hold user ids.

    Returns:
        list of RawIdHit: ``(file, user_id)`` pairs, sorted; empty when clean.

    Raises:
        FileNotFoundError: When ``folder`` is not a directory.
        ValueError: When ``user_ids`` is empty.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"scan_for_raw_ids: folder {root} does not exist or is not a directory")
    matcher = _IdMatcher(user_ids, id_columns)
    if not matcher.ids:
        raise ValueError("scan_for_raw_ids: user_ids is empty; pass the raw ids that must not appear")
    hits: set[RawIdHit] = set()
    skipped = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        found, read = _file_hits(path, matcher)
        if not read:
            skipped.append(path)
        hits.update(RawIdHit(path, user_id) for user_id in found)
    if skipped:
        logger.info("scan_for_raw_ids: skipped %d binary files under %s, e.g. %s", len(skipped), root, skipped[0].name)
    if hits:
        logger.warning("scan_for_raw_ids: %d raw user ids found in %d files under %s", len(hits), len({h.file for h in hits}), root)
    return sorted(hits, key=lambda hit: (str(hit.file), len(hit.user_id), hit.user_id))


# --------------------------------------------------------------------------- differentially private training

ACCOUNTANTS = ("prv", "rdp", "gdp")
# opacus searches the noise multiplier until the planned epsilon is within 0.01 of the target
# (epsilon_tolerance of get_noise_multiplier). The PRV accountant adds its own numerical error,
# 0.01 by default, so the check allows both with room to spare.
EPSILON_TOLERANCE = 0.05


class PrivacyBudgetError(RuntimeError):
    """Raised when DP training spent more privacy budget than it was given."""


@dataclass(frozen=True)
class DPConfig:
    """Model and DP-SGD settings of :class:`DPTwoTowerRecommender`.

    With the defaults, one model trains on MovieLens-100k (943 users) in
    about 5 s without DP and 16 s with DP on 2 CPU cores (measured while
    other jobs shared the machine). Notebook 08 records the times of each run.
    """

    dim: int = 64  # size of user vectors
    hidden_dim: int = 128  # hidden layer of the user MLP
    use_item_ids: bool = True  # learned item-ID vectors (user-tower inputs and item vectors) beside the public content vectors
    content_dim: int | None = 64  # content vectors are cut to their top singular directions (None keeps all)
    max_targets: int = 20  # next-item targets per user and step: the user's most recent items
    epochs: int = 10  # fixed in advance: early stopping on private validation data would spend budget unaccounted
    batch_size: int = 256  # expected users per step (each user is drawn with probability batch_size / n_users); DP-SGD prefers large batches
    lr: float = 1e-2  # Adam learning rate
    max_grad_norm: float = 1.0  # per-user gradient clipping norm C
    accountant: str = "prv"  # opacus accountant: "prv" (tightest), "rdp" or "gdp"
    seed: int = DEFAULT_SEED  # seeds weights, Poisson sampling and the noise

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def for_profile(cls, profile, **overrides) -> "DPConfig":
        """Return the settings for a run profile: the defaults, or for ``smoke`` a tiny model and one epoch.

        Args:
            profile (str or Profile): ``smoke``, ``fast`` or ``full``.
            **overrides: Fields to change on top of the profile's settings.
        """
        from vidrec_lab.config import get_profile

        chosen = get_profile(profile)
        base = cls(dim=16, hidden_dim=32, content_dim=16, epochs=1, batch_size=16) if chosen.fast_dev_run else cls()
        return replace(base, **overrides).validate()

    def validate(self) -> "DPConfig":
        """Raise ``ValueError`` naming the first invalid setting; return self otherwise."""
        if self.content_dim is not None and (isinstance(self.content_dim, bool) or not isinstance(self.content_dim, (int, np.integer)) or self.content_dim < 1):
            raise ValueError(f"DPConfig: content_dim must be a positive integer or None; got {self.content_dim!r}")
        for name in ("dim", "hidden_dim", "max_targets", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"DPConfig: {name} must be a positive integer; got {value!r}")
        for name in ("lr", "max_grad_norm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"DPConfig: {name} must be a positive number; got {value!r}")
        if self.accountant not in ACCOUNTANTS:
            raise ValueError(f"DPConfig: accountant must be one of {list(ACCOUNTANTS)}; got {self.accountant!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"DPConfig: seed must be a non-negative integer; got {self.seed!r}")
        return self


@dataclass
class DPReport:
    """Privacy cost of one training run: the requested budget, the noise used and the accountant's epsilon.

    For a non-private run ``private`` is False, the noise multiplier is 0 and
    the epsilons are infinite.

    Attributes:
        private (bool): Trained with DP-SGD.
        target_epsilon (float): Budget given to ``make_private_with_epsilon``.
        delta (float): The delta of the (epsilon, delta) guarantee.
        spent_epsilon (float): ``privacy_engine.get_epsilon(delta)`` after training.
        noise_multiplier (float): Gaussian noise std divided by ``max_grad_norm``.
        max_grad_norm (float): Per-user clipping norm.
        sample_rate (float): Probability that a user is in a step's batch.
        steps (int): Optimizer steps taken.
        epochs (int): Passes over the users.
        n_users (int): Users in the training table (one training example each).
        accountant (str): opacus accountant used.
        privacy_unit (str): What one example is (``"user"``).
    """

    private: bool
    target_epsilon: float
    delta: float
    spent_epsilon: float
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    epochs: int
    n_users: int
    accountant: str | None
    privacy_unit: str = "user"

    def to_dict(self) -> dict:
        return asdict(self)


def check_budget(report: DPReport, tolerance: float = EPSILON_TOLERANCE) -> float:
    """Return ``spent_epsilon - target_epsilon`` after checking that the budget was kept.

    Raises:
        PrivacyBudgetError: When the spent epsilon exceeds the target by more
            than ``tolerance``.
    """
    if not report.private:
        return 0.0
    difference = report.spent_epsilon - report.target_epsilon
    if difference > tolerance:
        raise PrivacyBudgetError(
            f"DP training spent epsilon {report.spent_epsilon:.4f} at delta {report.delta:g}, above the target "
            f"{report.target_epsilon:g} by more than the tolerance {tolerance:g}; it took {report.steps} steps"
        )
    if difference < -tolerance:
        logger.warning(
            "DP training spent epsilon %.4f, well below the target %g: it took fewer steps (%d) than planned",
            report.spent_epsilon, report.target_epsilon, report.steps,
        )
    return float(difference)


class DPUserTower(nn.Module):
    """A mean-pooling user tower and a scoring head whose parameters all get per-user gradients.

    A user with history items ``h_1..h_t`` gets the vector
    ``z = MLP([mean_j c(h_j), mean_j e(h_j)])``, where ``c`` is the item's
    public content vector (a frozen buffer, e.g. MiniLM text embeddings) and
    ``e`` a learned item-ID input vector. An item ``i`` scores
    ``w_i . z + b_i + c_i . (P z)``: ``w_i`` and ``b_i`` are the item's
    learned ID vector and bias (one ``nn.Linear``), and ``P`` projects the
    user into the content space, so the content side of the item tower needs
    no parameters of its own.

    Every trainable parameter sits in an ``nn.Embedding`` or ``nn.Linear``
    whose activations have the batch of users as first dimension, which is
    what opacus' hook-based per-sample gradients require. The full two-tower
    model of :mod:`vidrec_lab.models.two_tower` runs its item tower once over
    the whole catalog per step, so its item-tower activations have no per-user
    dimension and hooks cannot split their gradients by user.

    Args:
        content (Tensor or None): (n_items, d_c) public item vectors, or None.
        n_items (int): Catalog size.
        dim (int): User vector size.
        hidden_dim (int): Hidden layer of the MLP.
        use_item_ids (bool): Learn the ID vectors ``e`` and ``w``; without
            them only the biases ``b_i`` are learned per item.
        max_targets (int): Next-item targets per user in :meth:`forward`.
    """

    def __init__(self, content: Tensor | None, n_items: int, *, dim: int, hidden_dim: int, use_item_ids: bool, max_targets: int) -> None:
        super().__init__()
        if content is None and not use_item_ids:
            raise ValueError("DPUserTower: needs content vectors, item-ID vectors (use_item_ids=True), or both; got neither")
        self.n_items = int(n_items)
        self.max_targets = int(max_targets)
        self.pad = self.n_items  # index of the padding row
        if content is not None:
            padded = torch.cat([content.float(), torch.zeros(1, content.shape[1])])  # (n_items + 1, d_c)
            self.register_buffer("content", padded)
        else:
            self.content = None
        content_dim = 0 if content is None else int(content.shape[1])
        # ID inputs are a Linear layer on the normalised multi-hot history rather than an nn.Embedding
        # over the padded sequence: for the mean, the two are the same, and the Linear layer's per-user
        # gradient norms cost little, whatever the history length.
        self.item_input = nn.Linear(self.n_items, dim, bias=False) if use_item_ids else None
        if self.item_input is not None:
            nn.init.normal_(self.item_input.weight)
        self.mlp = nn.Sequential(
            nn.Linear(content_dim + (dim if use_item_ids else 0), hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, dim),
        )
        # Without ID vectors the biases are a Linear layer on a constant 1, so they still get per-user gradients.
        self.use_item_ids = bool(use_item_ids)
        self.item_output = nn.Linear(dim if use_item_ids else 1, self.n_items)
        self.content_projection = nn.Linear(dim, content_dim, bias=False) if content is not None else None

    def encode(self, mean_content: Tensor | None, mean_ids: Tensor | None) -> Tensor:
        """Return user vectors (..., dim) from the mean content and mean ID vectors of their histories."""
        parts = [p for p in (mean_content, mean_ids) if p is not None]
        return self.mlp(torch.cat(parts, dim=-1))

    def score(self, users: Tensor) -> Tensor:
        """Return scores (..., n_items) for user vectors (..., dim)."""
        if self.use_item_ids:
            scores = self.item_output(users)
        else:
            scores = self.item_output(torch.ones(*users.shape[:-1], 1, dtype=users.dtype, device=users.device))
        if self.content_projection is not None:
            scores = scores + self.content_projection(users) @ self.content[: self.n_items].T
        return scores

    def target_positions(self, lengths: Tensor, width: int) -> tuple[Tensor, Tensor]:
        """Return (B, K) positions of each user's last K items and a mask of real targets.

        A position p is a target when p >= 1, so at least one item comes before it.
        """
        k = min(self.max_targets, width - 1)
        positions = lengths.unsqueeze(1) - k + torch.arange(k, device=lengths.device).unsqueeze(0)  # (B, K)
        return positions.clamp(min=1, max=width - 1), positions >= 1

    def forward(self, sequences: Tensor, lengths: Tensor, mean_content: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Score every catalog item after each prefix that ends just before one of the user's last K items.

        Args:
            sequences (Tensor): (B, T) item indices in time order, right padded with ``n_items``; T >= 2.
            lengths (Tensor): (B,) number of real items per row.
            mean_content (Tensor): (B, K, d_c) mean content vector of each of those
                prefixes, from :func:`_content_prefix_means`; (B, K, 0) without content.

        Returns:
            tuple: ``(logits, targets, mask)``: (B, K, n_items) scores, (B, K)
            target items, and (B, K) bool marking real targets.
        """
        batch, width = sequences.shape
        positions, mask = self.target_positions(lengths, width)
        steps = torch.arange(width, device=sequences.device).unsqueeze(0).expand(batch, -1)  # (B, T)
        items = sequences.masked_fill(steps >= lengths.unsqueeze(1), self.pad)
        targets = items.gather(1, positions)  # (B, K)
        mean_ids = None
        if self.item_input is not None:
            # Position of each item in the user's sequence (width where absent); items are unique per user.
            where = torch.full((batch, self.n_items + 1), width, dtype=torch.long, device=sequences.device)
            where.scatter_(1, items, steps)
            before = where[:, None, : self.n_items] < positions.unsqueeze(-1)  # (B, K, n_items): item in the prefix
            mean_ids = self.item_input(before.float() / positions.unsqueeze(-1).float())  # (B, K, dim)
        mean_content = mean_content if self.content is not None else None
        return self.score(self.encode(mean_content, mean_ids)), targets, mask


def _content_prefix_means(model: DPUserTower, sequences: list[np.ndarray], width: int) -> Tensor:
    """Return (n_users, K, d_c): the mean content vector before each target of each user.

    Content vectors are fixed, so these means are computed once instead of in every step.
    """
    k = min(model.max_targets, width - 1)
    if model.content is None:
        return torch.zeros(len(sequences), k, 0)
    content = model.content[: model.n_items].numpy()
    out = np.zeros((len(sequences), k, content.shape[1]), dtype=np.float32)
    lengths = torch.tensor([len(s) for s in sequences])
    positions, _ = model.target_positions(lengths, width)
    for row, sequence in enumerate(sequences):
        sums = np.cumsum(content[sequence], axis=0)  # (L, d_c)
        steps = positions[row].numpy()
        out[row] = sums[np.minimum(steps, len(sequence)) - 1] / steps[:, None]
    return torch.from_numpy(out)


def _per_user_losses(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Return (B,) losses: each user's next-item cross-entropy averaged over that user's own targets.

    Averaging per user first keeps one user's gradient from growing with the
    length of the history. The batch loss is then a plain mean over users,
    which is what opacus' ``loss_reduction="mean"`` expects.
    """
    batch, k, n_items = logits.shape
    losses = F.cross_entropy(logits.reshape(-1, n_items), targets.reshape(-1).clamp(max=n_items - 1), reduction="none")
    losses = losses.view(batch, k) * mask
    return losses.sum(dim=1) / mask.sum(dim=1).clamp(min=1)  # (B,)


def _first_time_sequences(train: pd.DataFrame, item_index: Mapping[str, int]) -> tuple[list[str], list[np.ndarray]]:
    """Return users and, per user, catalog indices of their items in order of first interaction.

    Ties in time are broken by item id, numerically for integer ids, as the splits do.
    """
    item_codes = train[COL_ITEM].astype(str).map(item_index)
    unknown = item_codes.isna().to_numpy()
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise DataError(
            f"DPTwoTowerRecommender.fit: item_id {train[COL_ITEM].iloc[row]!r} at row {row} of the training table "
            "is not in the catalog; pass an items table that contains every training item"
        )
    users, user_codes = np.unique(train[COL_USER].astype(str).to_numpy(), return_inverse=True)
    keys = id_sort_key(train[COL_ITEM]).to_numpy()
    keys = keys.astype(str) if keys.dtype == object else keys
    order = np.lexsort((keys, train[COL_TIMESTAMP].to_numpy(), user_codes))
    user_sorted = user_codes[order]
    item_sorted = item_codes.to_numpy().astype(np.int64)[order]
    _, first = np.unique(user_sorted * len(item_index) + item_sorted, return_index=True)
    keep = np.zeros(len(order), dtype=bool)
    keep[first] = True
    user_sorted, item_sorted = user_sorted[keep], item_sorted[keep]
    bounds = np.flatnonzero(np.diff(user_sorted)) + 1
    return [str(u) for u in users], np.split(item_sorted, bounds)


def _content_matrix(item_vectors, item_ids: Sequence[str]) -> np.ndarray:
    """Return the rows of ``item_vectors`` (ids, matrix) in catalog order."""
    ids, matrix = item_vectors
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2 or len(ids) != matrix.shape[0]:
        raise ValueError(f"item_vectors must be (item_ids, matrix) with one row per id; got {len(ids)} ids and shape {matrix.shape}")
    position = {str(i): row for row, i in enumerate(ids)}
    missing = [i for i in item_ids if i not in position]
    if missing:
        raise DataError(
            f"item_vectors lack {len(missing)} catalog items, e.g. {missing[:3]}; encode every item of the catalog"
        )
    return matrix[[position[i] for i in item_ids]]


def _reduce_dimensions(matrix: np.ndarray, dim: int | None) -> np.ndarray:
    """Return ``matrix`` projected on its top ``dim`` right singular vectors (uncentred, so dot products survive).

    The content vectors are public, so this projection costs no privacy; it
    makes scoring the catalog, which every step does for every target, cheaper.
    """
    if dim is None or dim >= matrix.shape[1]:
        return matrix
    # The right singular vectors are the eigenvectors of the (d, d) Gram matrix, which is much
    # cheaper to decompose than the (n_items, d) matrix itself.
    values, vectors = np.linalg.eigh(matrix.T.astype(np.float64) @ matrix.astype(np.float64))
    top = vectors[:, np.argsort(values)[::-1][:dim]]  # (d, dim)
    return (matrix @ top).astype(np.float32)  # (n_items, dim)


class DPTwoTowerRecommender(Recommender):
    """A two-tower recommender trained with DP-SGD (opacus), or without it as the reference.

    **Model.** :class:`DPUserTower`: the user is the mean of the public
    content vectors and of learned ID vectors of the items in the history,
    through an MLP; items are scored by learned ID vectors and biases plus
    their content vectors. Training predicts each of the user's last
    ``max_targets`` items from the items before it (full softmax over the
    catalog). At inference the history is the whole ``history`` table given
    to :meth:`recommend`, so a mean over a set: its order does not matter.

    **Privacy unit and guarantee.** One training example is one user: the
    user's whole training sequence with all of its targets. opacus draws
    each user into a step's batch independently with probability
    ``batch_size / n_users`` (Poisson sampling), clips each user's gradient
    to ``max_grad_norm`` and adds Gaussian noise, and its accountant tracks
    epsilon. The trained weights are therefore (epsilon, delta)-DP with
    respect to adding or removing one user's entire training interactions:
    user-level, not interaction-level, DP. The item content vectors are not
    covered, so they must come from public item metadata, not from
    interactions. Neither are the catalog itself and hyperparameters chosen
    by looking at results on the same data. The history read at inference is
    outside the guarantee too: a user's own recommendations use their own
    history.

    **Training loop.** A plain PyTorch loop rather than Lightning: opacus
    replaces the optimizer and the data loader and wraps the module, which
    Lightning's Trainer does not expect. The number of epochs is fixed in
    advance because stopping early on private validation data would spend
    budget the accountant does not see. The non-private reference
    (``target_epsilon=None``) runs the same loop with shuffled batches of
    ``batch_size`` and no clipping or noise.

    Args:
        item_vectors (tuple, optional): ``(item_ids, matrix)`` of public
            content vectors (e.g. from :func:`vidrec_lab.features.text.encode_items`);
            must cover the catalog. None trains on item IDs alone.
        config (DPConfig, optional): Model and training settings.
        target_epsilon (float or None): Privacy budget; None trains without DP.
        delta (float, optional): The delta of the guarantee; default
            ``0.1 / n_users``, well below one over the number of users.
        chunk_size (int): Users scored per block in :meth:`recommend`.

    Attributes:
        model_ (DPUserTower): The trained model.
        report_ (DPReport): Budget, noise and spent epsilon.
        loss_history_ (list of float): Mean training loss per epoch.
        fit_seconds_ (float): Training time.

    Note:
        Noise comes from a seeded ``torch.Generator`` so that runs repeat
        exactly; a real release should use ``PrivacyEngine(secure_mode=True)``.
    """

    name = "DP two-tower"

    def __init__(self, item_vectors=None, config: DPConfig | None = None, *, target_epsilon: float | None = 8.0, delta: float | None = None, chunk_size: int = 1024) -> None:
        super().__init__(chunk_size=chunk_size)
        self.item_vectors = item_vectors
        self.config = (config or DPConfig()).validate()
        if target_epsilon is not None and (isinstance(target_epsilon, bool) or not isinstance(target_epsilon, (int, float)) or not target_epsilon > 0):
            raise ValueError(f"target_epsilon must be a positive number or None (no DP); got {target_epsilon!r}")
        if delta is not None and not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1); got {delta!r}")
        self.target_epsilon = target_epsilon
        self.delta = delta
        self.scores_cold_items = item_vectors is not None

    def _fit(self, train: pd.DataFrame) -> None:
        require_columns(train, [COL_USER, COL_ITEM, COL_TIMESTAMP], where="DPTwoTowerRecommender.fit(train)")
        config = self.config
        started = time.perf_counter()
        users, sequences = _first_time_sequences(train, self.item_index_)
        width = max(2, max(len(s) for s in sequences))
        padded = torch.full((len(users), width), len(self.item_ids_), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            padded[row, : len(sequence)] = torch.from_numpy(sequence)
        lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)

        content = None
        if self.item_vectors is not None:
            content = torch.from_numpy(_reduce_dimensions(_content_matrix(self.item_vectors, self.item_ids_), config.content_dim))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = DPUserTower(
                content, len(self.item_ids_), dim=config.dim, hidden_dim=config.hidden_dim,
                use_item_ids=config.use_item_ids, max_targets=config.max_targets,
            )
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(padded, lengths, _content_prefix_means(model, sequences, width)),
            batch_size=config.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(config.seed),
        )
        delta = self.delta if self.delta is not None else 0.1 / len(users)
        self.model_, self.report_, self.loss_history_ = _train_user_tower(model, loader, config, self.target_epsilon, delta)
        self.model_.eval()
        self.fit_seconds_ = time.perf_counter() - started
        check_budget(self.report_)
        logger.info(
            "%s: %s in %.1f s (%d steps, noise multiplier %.3f)",
            self.name,
            f"epsilon {self.report_.spent_epsilon:.3f} spent of {self.target_epsilon:g} at delta {delta:.2g}" if self.report_.private else "trained without DP",
            self.fit_seconds_, self.report_.steps, self.report_.noise_multiplier,
        )

    def _score_matrix(self, user_ids: list[str], history: sp.csr_matrix) -> np.ndarray:
        model = self.model_
        counts = np.asarray(history.sum(axis=1), dtype=np.float32).clip(min=1.0)  # (n_users, 1)
        with torch.inference_mode():
            mean_content = mean_ids = None
            if model.content is not None:
                content = model.content[: model.n_items].numpy()
                mean_content = torch.from_numpy(np.asarray(history @ content, dtype=np.float32) / counts)
            if model.item_input is not None:
                vectors = model.item_input.weight.T.numpy()  # (n_items, dim)
                mean_ids = torch.from_numpy(np.asarray(history @ vectors, dtype=np.float32) / counts)
            return model.score(model.encode(mean_content, mean_ids)).numpy()


def _train_user_tower(model: DPUserTower, loader, config: DPConfig, target_epsilon: float | None, delta: float) -> tuple[DPUserTower, DPReport, list[float]]:
    """Train ``model`` with DP-SGD (``target_epsilon`` given) or plain Adam; return it, the report and losses.

    DP-SGD uses opacus' ghost clipping: a first backward pass computes each
    user's gradient norm without storing per-user gradients, a second one the
    sum of the clipped gradients. The result equals clipping stored per-user
    gradients (a test checks this), at a fraction of the memory and time for
    the large item-ID layers.
    """
    with warnings.catch_warnings():
        # Three opacus warnings are known and harmless here. secure_mode is off (see the NOTE on
        # DPTwoTowerRecommender). Backward hooks fire on module outputs because no input needs a
        # gradient. The accountant reports that the largest RDP order was the optimal one.
        for message in ("Secure RNG turned off", "Full backward hook is firing", "Optimal order is the largest alpha"):
            warnings.filterwarnings("ignore", message=f".*{message}.*")
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        n_users = len(loader.dataset)
        if target_epsilon is None:
            losses, steps = _run_epochs(model, optimizer, loader, config.epochs, None)
            report = DPReport(False, math.inf, float(delta), math.inf, 0.0, math.inf, min(1.0, config.batch_size / n_users), steps, config.epochs, n_users, None)
            return model, report, losses

        from opacus import PrivacyEngine

        engine = PrivacyEngine(accountant=config.accountant)
        module, optimizer, _, loader = engine.make_private_with_epsilon(
            module=model,
            optimizer=optimizer,
            data_loader=loader,
            target_epsilon=float(target_epsilon),
            target_delta=float(delta),
            epochs=config.epochs,
            max_grad_norm=config.max_grad_norm,
            grad_sample_mode="ghost",
            noise_generator=torch.Generator().manual_seed(config.seed + 1),
        )
        losses, steps = _run_epochs(module, optimizer, loader, config.epochs, model)
        report = DPReport(
            private=True,
            target_epsilon=float(target_epsilon),
            delta=float(delta),
            spent_epsilon=float(engine.get_epsilon(delta)),
            noise_multiplier=float(optimizer.noise_multiplier),
            max_grad_norm=float(config.max_grad_norm),
            sample_rate=float(loader.sample_rate),
            steps=steps,
            epochs=config.epochs,
            n_users=n_users,
            accountant=config.accountant,
        )
        module._close()  # removes opacus' hooks and per-sample state from the model
    return model, report, losses


def _run_epochs(module, optimizer, loader, epochs: int, private_model: DPUserTower | None) -> tuple[list[float], int]:
    """Run the training loop; ``private_model`` is the model under opacus' wrapper ``module``, or None without DP.

    Returns the mean loss of each epoch and the number of optimizer steps.
    """
    from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping

    module.train()
    steps, losses = 0, []
    for _ in tqdm(range(epochs), desc="DP-SGD" if private_model is not None else "training", unit="epoch", leave=False):
        total, batches = 0.0, 0
        for sequences, lengths, mean_content in loader:
            optimizer.zero_grad(set_to_none=True)
            if len(sequences):
                per_user = _per_user_losses(*module(sequences, lengths, mean_content))
                if private_model is not None:
                    DPTensorFastGradientClipping(module, optimizer, per_user, "mean").backward()
                else:
                    per_user.mean().backward()
                total, batches = total + float(per_user.detach().mean()), batches + 1
            elif private_model is not None:
                # An empty Poisson batch still takes its step, a zero gradient plus noise, as the accountant assumes.
                for parameter in private_model.parameters():
                    parameter.grad = torch.zeros_like(parameter)
            optimizer.step()
            steps += 1
        losses.append(total / max(batches, 1))
    return losses, steps


# --------------------------------------------------------------------------- privacy-utility curve

NON_PRIVATE = "non-private"
POPULARITY = "MostPopular"
CURVE_COLUMNS = [
    "model", "private", "target_epsilon", "spent_epsilon", "delta", "noise_multiplier", "max_grad_norm",
    "steps", "metric", "k", "value", "ci_low", "ci_high", "fit_seconds",
]


def dp_model_name(epsilon: float) -> str:
    """Return the model name used for a DP model in :func:`privacy_utility_curve` tables (``"DP eps=4"``)."""
    return f"DP eps={epsilon:g}"


def privacy_utility_curve(
    split,
    items: pd.DataFrame,
    epsilons: Sequence[float] = (1.0, 4.0, 16.0),
    *,
    item_vectors=None,
    config: DPConfig | None = None,
    delta: float | None = None,
    k: int = 10,
    n_bootstrap: int = 200,
    include_popularity: bool = True,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """Train the DP two-tower model at each budget and the same model without DP, and evaluate all on one split.

    Every model is fitted on ``split.train`` and ranked over the full catalog
    by :func:`vidrec_lab.evaluation.protocol.evaluate` (history: train plus
    validation, seen items excluded), so the rows are directly comparable.

    Args:
        split (Split): A split, usually :func:`vidrec_lab.splits.leave_last_out`.
        items (pandas.DataFrame): Item table (the catalog).
        epsilons (sequence of float): Privacy budgets, at least one.
        item_vectors (tuple, optional): ``(item_ids, matrix)`` of public content vectors.
        config (DPConfig, optional): Shared by every model, the non-private one included.
        delta (float, optional): See :class:`DPTwoTowerRecommender`.
        k (int): NDCG cut-off.
        n_bootstrap (int): Bootstrap resamples for the confidence intervals.
        include_popularity (bool): Add MostPopular as a second reference.
        seed (int): Seed of the evaluation bootstrap.

    Returns:
        pandas.DataFrame: One row per model with the columns of
        :data:`CURVE_COLUMNS`: budget and spent epsilon (``inf`` for models
        without DP, which also have noise multiplier 0), NDCG@k with its 95%
        bootstrap interval, and the training time.

    Raises:
        ValueError: On an empty or non-positive list of epsilons.
        PrivacyBudgetError: When a model spends more than its budget.
    """
    from vidrec_lab.evaluation.protocol import evaluate
    from vidrec_lab.models.baselines import MostPopular

    epsilons = [float(e) for e in epsilons]
    if not epsilons or any(not e > 0 for e in epsilons):
        raise ValueError(f"epsilons must be a non-empty list of positive numbers; got {epsilons!r}")
    config = config or DPConfig()
    budgets: dict[str, float | None] = {NON_PRIVATE: None, **{dp_model_name(e): e for e in sorted(epsilons)}}
    models: dict[str, Recommender] = {}
    for name, epsilon in budgets.items():
        logger.info("privacy_utility_curve: training %s", name)
        models[name] = DPTwoTowerRecommender(item_vectors, config, target_epsilon=epsilon, delta=delta).fit(split.train, items)
    if include_popularity:
        models[POPULARITY] = MostPopular().fit(split.train, items)
    result = evaluate(models, split, ks=(k,), metrics=("ndcg",), n_bootstrap=n_bootstrap, seed=seed, segments=False)
    rows = []
    for name, model in models.items():
        measured = result.table[result.table["model"] == name].iloc[0]
        report = getattr(model, "report_", None)
        rows.append({
            "model": name,
            "private": bool(report.private) if report else False,
            "target_epsilon": report.target_epsilon if report else math.inf,
            "spent_epsilon": report.spent_epsilon if report else math.inf,
            "delta": report.delta if report else None,
            "noise_multiplier": report.noise_multiplier if report else 0.0,
            "max_grad_norm": report.max_grad_norm if report else None,
            "steps": report.steps if report else 0,
            "metric": "ndcg",
            "k": k,
            "value": float(measured["value"]),
            "ci_low": float(measured["ci_low"]),
            "ci_high": float(measured["ci_high"]),
            "fit_seconds": round(getattr(model, "fit_seconds_", float("nan")), 2),
        })
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def plot_privacy_utility(table: pd.DataFrame, *, ax=None):
    """Plot NDCG@k against the spent epsilon, with the models without DP as horizontal reference lines.

    Args:
        table (pandas.DataFrame): Output of :func:`privacy_utility_curve`.
        ax (matplotlib.axes.Axes, optional): Where to draw; default a new one.

    Returns:
        matplotlib.axes.Axes: The axes.
    """
    from vidrec_lab.viz import PALETTE, new_axes

    require_columns(table, ["model", "private", "spent_epsilon", "value", "ci_low", "ci_high", "k"], where="plot_privacy_utility(table)")
    if ax is None:
        _, ax = new_axes()
    k = int(table["k"].iloc[0])
    private = table[table["private"]].sort_values("spent_epsilon")
    values = private["value"].to_numpy()
    errors = [values - private["ci_low"].to_numpy(), private["ci_high"].to_numpy() - values]
    ax.errorbar(private["spent_epsilon"], values, yerr=errors, marker="o", color=PALETTE[0], capsize=2, lw=1.2, label="DP-SGD")
    for (_, row), color, style in zip(table[~table["private"]].iterrows(), (PALETTE[3], PALETTE[2], PALETTE[4]), ("-", "--", ":")):
        ax.axhline(row["value"], color=color, ls=style, lw=1.0, label=str(row["model"]))
        ax.axhspan(row["ci_low"], row["ci_high"], color=color, alpha=0.12, lw=0)
    ax.set_xscale("log")
    ax.set_xlabel("privacy budget ε (spent, log scale)")
    ax.set_ylabel(f"NDCG@{k} (95% CI)")
    ax.set_title("Privacy-utility trade-off")
    ax.legend(frameon=False)
    return ax
