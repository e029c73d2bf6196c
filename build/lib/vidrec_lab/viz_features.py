"""Tables and figures for the data and content-feature notebooks (01 and 02).

Text cleaning, shown on real rows:

* :func:`find_text_examples` picks the shortest (or first) text that shows
  each pattern (HTML entity, URL, emoji, full-width characters, Chinese, hashtags).
* :func:`cleaning_table` puts each raw text beside its cleaned text and tags.
* :func:`cleaning_ablation` switches each cleaning step off in turn and keeps
  the rows where that changes the output.

Behaviour: :func:`plot_activity_over_time`, :func:`plot_watch_ratio`,
:func:`plot_interaction_matrix`, :func:`plot_top_tags` and
:func:`sequence_preview`.

Embeddings: :func:`primary_genres`, :func:`project_2d` with
:func:`plot_embedding_2d`, :func:`genre_pair_cosines` with
:func:`genre_cosine_gap` and :func:`plot_pair_cosines`, and
:func:`nearest_titles`. Media: :func:`media_feature_table`.

Plot functions take an ``Axes`` (or create one with
:func:`vidrec_lab.viz.new_axes`) and return it.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import matplotlib.dates
import matplotlib.ticker
import numpy as np
import pandas as pd
import scipy.sparse as sp

from vidrec_lab.constants import COL_EVENT, COL_ITEM, COL_TIMESTAMP, COL_USER, COL_VALUE, DEFAULT_SEED, EVENT_VIEW
from vidrec_lab.features.text import TextCleaningConfig, clean_text, split_hashtags
from vidrec_lab.tables import DataError, require_columns
from vidrec_lab.viz import PALETTE, new_axes

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- text cleaning examples

# Patterns that detect (not clean) what each cleaning step handles, in the order rows are shown.
TEXT_EXAMPLE_PATTERNS: dict[str, str] = {
    "HTML entity": r"&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#[xX][0-9A-Fa-f]+);",
    "HTML tag": r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>",
    "URL": r"(?:https?://|ftp://|www\.)\S",
    "emoji": "[\U0001F300-\U0001FAFF\u2600-\u27BF]",
    "full-width characters": "[\uFF01-\uFF5E\u3000]",
    "Chinese text": "[\u4E00-\u9FFF]{4,}",  # four ideographs in a row: Chinese text, not one character in English
    "hashtags": "[#＃]",
}

# Patterns for MovieLens titles, which move articles to the end and add alternative titles in brackets.
MOVIELENS_TITLE_PATTERNS: dict[str, str] = {
    "English article at the end": r", (?:The|A|An)$",
    "article of another language": r", (?:L'|La|Le|Les|Il|El|Las|Los|Der|Die|Das)$",
    "alternative title with article": r", (?:The|A|An|L'|La|Le|Les|Il|El|Der|Die|Das)\)$",
    "accented letters": "[\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u00FF]",  # Latin-1 letters, without × and ÷
}

EXAMPLE_CHOICES = ("shortest", "first")

# The value that switches each TextCleaningConfig step off.
CLEANING_STEPS_OFF: dict[str, object] = {
    "strip_html_tags": False,
    "unescape_html": False,
    "unicode_nfkc": False,
    "remove_urls": False,
    "emoji": "keep",
    "hashtags": "keep",
    "movielens_title": False,
    "collapse_whitespace": False,
}


def find_text_examples(
    texts: pd.Series, patterns: Mapping[str, str] | None = None, *, choose: str = "shortest"
) -> pd.DataFrame:
    """Pick one text that matches each pattern, to show cleaning on real rows.

    Args:
        texts (pandas.Series): Texts, indexed by item id (or any label).
            Missing values are skipped.
        patterns (Mapping, optional): Example kind to regular expression;
            default :data:`TEXT_EXAMPLE_PATTERNS`.
        choose (str): ``"shortest"`` (default) picks the shortest matching
            text, the first of equal length, so the whole text fits in a
            table cell. ``"first"`` picks the first match.

    Returns:
        pandas.DataFrame: Indexed by kind, in the order of ``patterns``, with
        columns ``source`` (the label of the text in ``texts``) and ``text``.
        A kind that no text matches has no row. One text may be the example
        of several kinds.

    Raises:
        TypeError: If ``texts`` is not a pandas Series.
        ValueError: If a pattern is not a valid regular expression (the
            message names the kind).
    """
    if not isinstance(texts, pd.Series):
        raise TypeError(f"find_text_examples: texts must be a pandas Series; got {type(texts).__name__}")
    if choose not in EXAMPLE_CHOICES:
        raise ValueError(f"find_text_examples: choose must be one of {EXAMPLE_CHOICES}; got {choose!r}")
    patterns = TEXT_EXAMPLE_PATTERNS if patterns is None else patterns
    present = texts.dropna()
    present = present[present.map(lambda value: isinstance(value, str))]
    rows = []
    for kind, pattern in patterns.items():
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"find_text_examples: pattern for {kind!r} is not a valid regular expression: {exc}") from exc
        matches = present[present.str.contains(compiled, regex=True)]
        if len(matches) == 0:
            continue
        position = int(np.argmin(matches.str.len().to_numpy())) if choose == "shortest" else 0
        rows.append((kind, matches.index[position], matches.iloc[position]))
    frame = pd.DataFrame(rows, columns=["kind", "source", "text"]).set_index("kind")
    return frame


def cleaning_table(texts: pd.Series, config: TextCleaningConfig | None = None, *, split_tags: bool = True) -> pd.DataFrame:
    """Put each raw text beside its cleaned text and the hashtags taken out of it.

    With ``split_tags``, hashtags are first moved out of the text with
    :func:`vidrec_lab.features.text.split_hashtags`, as
    :func:`~vidrec_lab.features.text.compose_item_text` does by default, and
    each tag is cleaned too. The text is then cleaned with ``config``.

    Args:
        texts (pandas.Series): Raw texts; the index is kept.
        config (TextCleaningConfig, optional): Cleaning steps; default
            ``TextCleaningConfig()``.
        split_tags (bool): Move ``#hashtags`` into a ``tags`` column.

    Returns:
        pandas.DataFrame: Columns ``raw``, ``cleaned`` and, with
        ``split_tags``, ``tags`` (list of str).

    Raises:
        TypeError: If ``texts`` is not a Series, or an element is neither a
            string nor missing.
    """
    if not isinstance(texts, pd.Series):
        raise TypeError(f"cleaning_table: texts must be a pandas Series; got {type(texts).__name__}")
    config = config if config is not None else TextCleaningConfig()
    cleaned, tags = [], []
    for raw in texts:
        text, found = split_hashtags(raw) if split_tags else (raw, [])
        cleaned.append(clean_text(text, config))
        tags.append([tag for tag in (clean_text(tag, config) for tag in found) if tag])
    table = pd.DataFrame({"raw": texts.to_numpy(dtype=object), "cleaned": cleaned}, index=texts.index)
    if split_tags:
        table["tags"] = tags
    return table


def cleaning_ablation(texts: pd.Series, config: TextCleaningConfig | None = None) -> pd.DataFrame:
    """Switch each cleaning step off in turn and keep the rows where the output changes.

    A step already off in ``config`` (``emoji="keep"`` for instance) is not
    tried. See :data:`CLEANING_STEPS_OFF` for the value that switches each
    step off.

    Args:
        texts (pandas.Series): Raw texts; the index labels the rows.
        config (TextCleaningConfig, optional): All steps as used; default
            ``TextCleaningConfig()``.

    Returns:
        pandas.DataFrame: Columns ``source`` (the label in ``texts``),
        ``step switched off``, ``all steps`` and ``without this step``; one row
        per (text, step) pair whose output differs, in text then step order.

    Raises:
        TypeError: If ``texts`` is not a Series, or an element is neither a
            string nor missing.
    """
    if not isinstance(texts, pd.Series):
        raise TypeError(f"cleaning_ablation: texts must be a pandas Series; got {type(texts).__name__}")
    config = config if config is not None else TextCleaningConfig()
    variants = {
        step: dataclasses.replace(config, **{step: off})
        for step, off in CLEANING_STEPS_OFF.items()
        if getattr(config, step) != off
    }
    rows = []
    for label, raw in texts.items():
        full = clean_text(raw, config)
        for step, variant in variants.items():
            without = clean_text(raw, variant)
            if without != full:
                rows.append((label, step, full, without))
    return pd.DataFrame(rows, columns=["source", "step switched off", "all steps", "without this step"])


# ---------------------------------------------------------------------------- behaviour


def plot_activity_over_time(
    interactions: pd.DataFrame, *, ax=None, freq: str = "W", col_timestamp: str = COL_TIMESTAMP
):
    """Plot the number of interactions per period (default: per week, weeks starting Monday, UTC).

    Args:
        interactions (pandas.DataFrame): Table with a ``timestamp`` column in
            seconds since 1970 (UTC).
        ax (matplotlib.axes.Axes, optional): Where to draw; default a new figure.
        freq (str): A pandas period alias: ``"D"``, ``"W"`` or ``"M"``.
        col_timestamp (str): Timestamp column.

    Returns:
        matplotlib.axes.Axes: The axes drawn on.

    Raises:
        DataError: On a missing column, an empty table or a timestamp that is
            not a number (the message names the row).
        ValueError: On a ``freq`` other than ``"D"``, ``"W"`` or ``"M"``.
    """
    labels = {"D": "day", "W": "week", "M": "month"}
    if freq not in labels:
        raise ValueError(f"plot_activity_over_time: freq must be one of {list(labels)}; got {freq!r}")
    where = "plot_activity_over_time(interactions)"
    require_columns(interactions, [col_timestamp], where=where)
    if len(interactions) == 0:
        raise DataError(f"{where}: the table is empty; there is no activity to plot")
    seconds = pd.to_numeric(interactions[col_timestamp], errors="coerce")
    if seconds.isna().any():
        row = int(np.flatnonzero(seconds.isna().to_numpy())[0])
        raise DataError(
            f"{where}: column '{col_timestamp}' at row {row} is {_plain(interactions[col_timestamp].iloc[row])!r}; "
            "expected seconds since 1970"
        )
    periods = pd.to_datetime(seconds, unit="s").dt.to_period(freq)
    counts = periods.value_counts().sort_index()
    full_range = pd.period_range(counts.index.min(), counts.index.max(), freq=freq)
    counts = counts.reindex(full_range, fill_value=0)  # periods without activity show as gaps, not skipped
    starts = counts.index.start_time
    widths = (counts.index.end_time - starts) * 0.85

    if ax is None:
        _, ax = new_axes()
    ax.bar(starts, counts.to_numpy(), width=widths, align="edge", color=PALETTE[0])
    locator = matplotlib.dates.AutoDateLocator(maxticks=6)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(matplotlib.dates.ConciseDateFormatter(locator))
    ax.set_xlabel(f"{labels[freq]} (UTC)")
    ax.set_ylabel("interactions")
    ax.set_title(f"Activity per {labels[freq]}")
    return ax


def _plain(value):
    """Return NumPy scalars as Python ones, so messages show ``1.5`` rather than ``np.float64(1.5)``."""
    return value.item() if isinstance(value, np.generic) else value


def plot_watch_ratio(
    interactions: pd.DataFrame,
    *,
    ax=None,
    event: str = EVENT_VIEW,
    bins: int = 20,
    col_event: str = COL_EVENT,
    col_value: str = COL_VALUE,
):
    """Plot the distribution of watch ratios (the ``value`` of ``view`` events), with the median.

    Args:
        interactions (pandas.DataFrame): Table with ``event`` and ``value`` columns.
        ax (matplotlib.axes.Axes, optional): Where to draw; default a new figure.
        event (str): Event kind whose value is the watch ratio.
        bins (int): Histogram bins over [0, 1].
        col_event, col_value (str): Column names.

    Returns:
        matplotlib.axes.Axes: The axes drawn on.

    Raises:
        DataError: On a missing column, no ``event`` rows (the message lists
            the events found) or a value that is not a number in [0, 1].
    """
    where = "plot_watch_ratio(interactions)"
    require_columns(interactions, [col_event, col_value], where=where)
    rows = interactions[interactions[col_event] == event]
    if len(rows) == 0:
        found = sorted(interactions[col_event].astype(str).unique().tolist())
        raise DataError(f"{where}: no {event!r} events, so there are no watch ratios; events found: {found}")
    ratios = pd.to_numeric(rows[col_value], errors="coerce").to_numpy(dtype=float)
    bad = ~((ratios >= 0) & (ratios <= 1))  # also true for NaN
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where}: {event!r} value at row {_plain(rows.index[position])!r} is {_plain(rows[col_value].iloc[position])!r}; "
            "a watch ratio must be a number in [0, 1]"
        )

    if ax is None:
        _, ax = new_axes()
    ax.hist(ratios, bins=np.linspace(0.0, 1.0, bins + 1), color=PALETTE[2], edgecolor="white", lw=0.3)
    median = float(np.median(ratios))
    ax.axvline(median, color=PALETTE[3], ls="--", lw=0.8, label=f"median {median:.2f}")
    ax.legend(frameon=False, loc="upper left")
    ax.set_xlim(0, 1)
    ax.set_xlabel("watch ratio (share of the video watched)")
    ax.set_ylabel(f"{event} events")
    ax.set_title("Watch ratio")
    return ax


def plot_interaction_matrix(matrix, *, ax=None, bins: int = 100):
    """Draw the user-by-item matrix as the share of filled cells per block, users and items sorted by activity.

    Rows are sorted by the user's number of stored cells and columns by the
    item's, most active first, so the dense head sits top left and the long
    tail fades out to the right. The matrix is cut into at most ``bins`` x
    ``bins`` blocks; each block's colour is the share of its cells that hold
    an interaction.

    Args:
        matrix (scipy.sparse matrix or numpy.ndarray): Shape (users, items),
            e.g. from :func:`vidrec_lab.features.behavior.interaction_matrix`.
        ax (matplotlib.axes.Axes, optional): Where to draw; default a new figure.
        bins (int): Blocks per side, at most.

    Returns:
        matplotlib.axes.Axes: The axes drawn on.

    Raises:
        ValueError: If the matrix is not 2-D with at least one row and column,
            or ``bins`` is not a positive integer.
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"plot_interaction_matrix: bins must be a positive integer; got {bins!r}")
    values = sp.csr_matrix(matrix)
    n_users, n_items = values.shape
    if n_users == 0 or n_items == 0:
        raise ValueError(f"plot_interaction_matrix: matrix must have rows and columns; got shape {values.shape}")
    filled = values.copy()
    filled.eliminate_zeros()
    rows, cols = filled.nonzero()
    user_rank = _rank_by_count(np.bincount(rows, minlength=n_users))
    item_rank = _rank_by_count(np.bincount(cols, minlength=n_items))
    user_edges = np.linspace(0, n_users, min(bins, n_users) + 1)
    item_edges = np.linspace(0, n_items, min(bins, n_items) + 1)
    counts, _, _ = np.histogram2d(user_rank[rows], item_rank[cols], bins=[user_edges, item_edges])
    # Cells per block: blocks hold whole rows and columns, so their sizes differ by at most one.
    block_rows = np.histogram(np.arange(n_users), bins=user_edges)[0]
    block_cols = np.histogram(np.arange(n_items), bins=item_edges)[0]
    share = counts / np.outer(block_rows, block_cols)

    if ax is None:
        _, ax = new_axes()
    image = ax.imshow(
        share, aspect="auto", cmap="Blues", vmin=0.0, vmax=max(float(share.max()), 1e-9),
        extent=(0, n_items, n_users, 0), interpolation="nearest",
    )
    ax.grid(False)
    ax.set_xlabel("items, most popular first")
    ax.set_ylabel("users, most active first")
    density = filled.nnz / (n_users * n_items)
    ax.set_title(f"Interaction matrix: {density:.2%} filled")
    ax.figure.colorbar(image, ax=ax, label="share of cells filled", format=matplotlib.ticker.PercentFormatter(1.0))
    return ax


def _rank_by_count(counts: np.ndarray) -> np.ndarray:
    """Return each position's rank when sorted by count, largest first (ties by position)."""
    order = np.argsort(-counts, kind="stable")
    rank = np.empty(len(counts), dtype=np.int64)
    rank[order] = np.arange(len(counts))
    return rank


def plot_top_tags(
    tags: pd.Series, *, ax=None, n: int = 15, max_label_chars: int = 24, title: str = "Most frequent tags"
):
    """Plot the ``n`` most frequent tags as horizontal bars with the share of items carrying each.

    Args:
        tags (pandas.Series): One list of tags per item (the ``tags`` column).
        ax (matplotlib.axes.Axes, optional): Where to draw; default a new figure.
        n (int): Number of tags shown.
        max_label_chars (int): Longer tags are cut to this many characters
            and end in "…", so the bars keep their width.
        title (str): Axes title.

    Returns:
        matplotlib.axes.Axes: The axes drawn on.

    Raises:
        DataError: If an element is not a list of tags, or no item has a tag.
        ValueError: If ``n`` is not a positive integer.
    """
    for name, value in (("n", n), ("max_label_chars", max_label_chars)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"plot_top_tags: {name} must be a positive integer; got {value!r}")
    counts = _tag_counts(tags, where="plot_top_tags(tags)")
    if counts.empty:
        raise DataError("plot_top_tags(tags): no item has a tag, so there is nothing to plot")
    top = counts.head(n)[::-1]
    if ax is None:
        _, ax = new_axes(aspect=max(0.75, 0.06 * len(top)))
    labels = [tag if len(tag) <= max_label_chars else tag[: max_label_chars - 1] + "…" for tag in top.index]
    # Positions, not labels, place the bars: two tags cut to the same label still get a bar each.
    positions = np.arange(len(top))
    ax.barh(positions, top.to_numpy() / len(tags), color=PALETTE[4])
    ax.set_yticks(positions)
    ax.set_yticklabels(labels)
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_xlabel("share of items")
    ax.set_title(title)
    ax.grid(axis="y", visible=False)
    return ax


def _tag_counts(tags: pd.Series, *, where: str) -> pd.Series:
    """Count items per tag (a tag repeated within one item counts once), most frequent first."""
    counts: dict[str, int] = {}
    for position, value in enumerate(tags):
        if not isinstance(value, (list, tuple, np.ndarray)):
            raise DataError(f"{where}: element {position} is {value!r}; expected a list of tags")
        for tag in dict.fromkeys(str(tag) for tag in value):
            counts[tag] = counts.get(tag, 0) + 1
    series = pd.Series(counts, dtype="int64")
    if series.empty:
        return series
    # Most frequent first; ties in code-point order, so the figure is the same on every run.
    return series.sort_index().sort_values(ascending=False, kind="stable")


def sequence_preview(
    sequences: Mapping[str, Sequence[str]], titles: pd.Series | None = None, *, n_users: int = 5, last: int = 5
) -> pd.DataFrame:
    """Show the latest items of a few users' time-ordered sequences.

    Args:
        sequences (Mapping): User id to item ids, oldest first, as
            :func:`vidrec_lab.features.behavior.user_sequences` returns.
        titles (pandas.Series, optional): Item id to title; items without a
            title show their id. Default: ids only.
        n_users (int): Users shown, in the mapping's order.
        last (int): Latest items shown per user.

    Returns:
        pandas.DataFrame: Indexed by ``user_id``, columns ``length`` and
        ``latest items`` (oldest of them first, joined with " → ").

    Raises:
        ValueError: If ``n_users`` or ``last`` is not a positive integer.
    """
    for name, value in (("n_users", n_users), ("last", last)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"sequence_preview: {name} must be a positive integer; got {value!r}")
    lookup = {} if titles is None else {str(key): str(value) for key, value in titles.items()}
    rows = []
    for user, items in list(sequences.items())[:n_users]:
        shown = [lookup.get(str(item), str(item)) for item in list(items)[-last:]]
        rows.append((str(user), len(items), " → ".join(shown)))
    return pd.DataFrame(rows, columns=[COL_USER, "length", "latest items"]).set_index(COL_USER)


# ---------------------------------------------------------------------------- embeddings

GENRE_MODES = ("first", "single")
PROJECTION_METHODS = ("pca", "tsne")


def primary_genres(
    genres: pd.Series, *, mode: str = "first", multiple: str = "multiple", missing: str = "none"
) -> pd.Series:
    """Reduce each item's genre list to one label, for colouring a plot.

    Args:
        genres (pandas.Series): One list of genres per item.
        mode (str): ``"first"`` takes the first genre listed. ``"single"``
            keeps the genre of items with exactly one genre and labels the
            others ``multiple``.
        multiple (str): Label of items with several genres in ``"single"`` mode.
        missing (str): Label of items without a genre.

    Returns:
        pandas.Series: One label per item, same index as ``genres``.

    Raises:
        DataError: If an element is not a list of genres.
        ValueError: On an unknown ``mode``.
    """
    if mode not in GENRE_MODES:
        raise ValueError(f"primary_genres: mode must be one of {GENRE_MODES}; got {mode!r}")
    labels = []
    for position, value in enumerate(genres):
        if not isinstance(value, (list, tuple, np.ndarray)):
            raise DataError(f"primary_genres: element {position} is {value!r}; expected a list of genres")
        if len(value) == 0:
            labels.append(missing)
        elif mode == "first" or len(value) == 1:
            labels.append(str(value[0]))
        else:
            labels.append(multiple)
    return pd.Series(labels, index=genres.index, name="genre", dtype=object)


@dataclass
class Projection:
    """Two-dimensional coordinates of a set of vectors.

    Attributes:
        coords (numpy.ndarray): float64, shape ``(n, 2)``.
        method (str): ``"pca"`` or ``"tsne"``.
        explained_variance_ratio (numpy.ndarray or None): Share of the variance
            on each PCA axis; None for t-SNE, whose axes have no such meaning.
    """

    coords: np.ndarray
    method: str
    explained_variance_ratio: np.ndarray | None = None

    @property
    def axis_labels(self) -> tuple[str, str]:
        """Axis labels: ``"PC1 (6.1% of variance)"`` for PCA, ``"t-SNE 1"`` for t-SNE."""
        if self.explained_variance_ratio is None:
            return "t-SNE 1", "t-SNE 2"
        first, second = self.explained_variance_ratio
        return f"PC1 ({first:.1%} of variance)", f"PC2 ({second:.1%})"


def project_2d(vectors: np.ndarray, *, method: str = "pca", seed: int = DEFAULT_SEED) -> Projection:
    """Project vectors to two dimensions with scikit-learn's PCA or t-SNE.

    PCA (full SVD, signs fixed by scikit-learn) is deterministic and keeps
    global distances; t-SNE keeps local neighbourhoods but distances between
    clusters mean little. t-SNE uses PCA initialisation, perplexity
    ``min(30, (n - 1) / 3)`` and ``seed``.

    Args:
        vectors (numpy.ndarray): Shape ``(n, dim)`` with ``n >= 3`` and ``dim >= 2``.
        method (str): ``"pca"`` or ``"tsne"``.
        seed (int): Seed of t-SNE's optimisation (PCA does not use it).

    Returns:
        Projection: Coordinates and, for PCA, the explained variance ratios.

    Raises:
        ValueError: On an unknown method, a shape too small, or values that
            are not finite.
    """
    if method not in PROJECTION_METHODS:
        raise ValueError(f"project_2d: method must be one of {PROJECTION_METHODS}; got {method!r}")
    values = np.asarray(vectors, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 3 or values.shape[1] < 2:
        raise ValueError(f"project_2d: vectors must have shape (n, dim) with n >= 3 and dim >= 2; got {values.shape}")
    if not np.isfinite(values).all():
        row = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
        raise ValueError(f"project_2d: vector {row} contains NaN or infinity")
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, svd_solver="full")
        coords = pca.fit_transform(values)
        return Projection(coords, method, pca.explained_variance_ratio_.copy())
    from sklearn.manifold import TSNE

    tsne = TSNE(n_components=2, init="pca", perplexity=min(30.0, (len(values) - 1) / 3), random_state=seed)
    return Projection(tsne.fit_transform(values), method, None)


def plot_embedding_2d(
    projection: Projection | np.ndarray,
    labels: pd.Series | Sequence[str],
    *,
    ax=None,
    top: int = 7,
    other: str = "other",
    annotate: Mapping[int, str] | None = None,
    max_label_chars: int = 28,
    title: str | None = None,
):
    """Scatter a 2-D projection with one colour per label, the rarer labels grey.

    The ``top`` most frequent labels get the palette's colours (their legend
    entries show the counts) and every other label is drawn in grey as
    ``other`` underneath them.

    Args:
        projection (Projection or numpy.ndarray): From :func:`project_2d`, or
            coordinates of shape ``(n, 2)``.
        labels (pandas.Series or sequence of str): One label per point.
        ax (matplotlib.axes.Axes, optional): Where to draw; default a new figure.
        top (int): Labels that get their own colour, at most ``len(PALETTE)``.
        other (str): Legend label of the grey points.
        annotate (Mapping, optional): Point position to text (e.g. a few
            titles, Chinese included). Each point is circled and numbered,
            and the legend gives the number's text.
        max_label_chars (int): Longer texts are cut to this many characters
            and end in "…".
        title (str, optional): Axes title.

    Returns:
        matplotlib.axes.Axes: The axes drawn on.

    Raises:
        ValueError: If the coordinates are not ``(n, 2)``, the label count
            differs from ``n``, ``top`` is out of range, or an annotated
            position does not exist.
    """
    coords = projection.coords if isinstance(projection, Projection) else np.asarray(projection, dtype=float)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"plot_embedding_2d: coordinates must have shape (n, 2); got {coords.shape}")
    labels = pd.Series(list(labels), dtype=object).astype(str)
    if len(labels) != len(coords):
        raise ValueError(f"plot_embedding_2d: got {len(labels)} labels for {len(coords)} points")
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not 1 <= top <= len(PALETTE):
        raise ValueError(f"plot_embedding_2d: top must be an integer from 1 to {len(PALETTE)}; got {top!r}")
    if isinstance(max_label_chars, bool) or not isinstance(max_label_chars, (int, np.integer)) or max_label_chars < 2:
        raise ValueError(f"plot_embedding_2d: max_label_chars must be an integer >= 2; got {max_label_chars!r}")
    annotate = dict(annotate or {})
    outside = [position for position in annotate if not 0 <= int(position) < len(coords)]
    if outside:
        raise ValueError(f"plot_embedding_2d: annotated positions {outside} are not in 0..{len(coords) - 1}")

    counts = labels.value_counts()
    counts = counts.sort_index().sort_values(ascending=False, kind="stable")  # ties in code-point order, so colours are stable
    shown = [label for label in counts.index if label != other][:top]
    if ax is None:
        _, ax = new_axes()
    rest = ~labels.isin(shown).to_numpy()
    if rest.any():
        ax.scatter(coords[rest, 0], coords[rest, 1], s=4, color="#BBBBBB", lw=0, label=f"{other} ({int(rest.sum())})")
    for colour, label in zip(PALETTE, shown):
        mask = (labels == label).to_numpy()
        ax.scatter(coords[mask, 0], coords[mask, 1], s=5, color=colour, lw=0, label=f"{label} ({int(mask.sum())})")
    for number, (position, text) in enumerate(annotate.items(), start=1):
        # A number beside the point and the text in the legend: titles written on the map overlap each other.
        x, y = coords[int(position)]
        label = str(text) if len(str(text)) <= max_label_chars else str(text)[: max_label_chars - 1] + "…"
        ax.scatter([x], [y], s=16, facecolors="none", edgecolors="black", lw=0.7)
        ax.annotate(
            str(number), (x, y), xytext=(3, 3), textcoords="offset points", fontsize=6, fontweight="bold",
            bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
        )
        ax.scatter([], [], s=16, facecolors="none", edgecolors="black", lw=0.7, label=f"{number}: {label}")
    if isinstance(projection, Projection):
        xlabel, ylabel = projection.axis_labels
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), markerscale=2, handletextpad=0.2)
    if title:
        ax.set_title(title)
    return ax


def _genre_sets(genres: pd.Series | Sequence, *, where: str) -> list[frozenset]:
    sets = []
    for position, value in enumerate(genres):
        if not isinstance(value, (list, tuple, np.ndarray)):
            raise DataError(f"{where}: genres element {position} is {value!r}; expected a list of genres")
        sets.append(frozenset(str(genre) for genre in value))
    return sets


def genre_pair_cosines(
    vectors: np.ndarray, genres: pd.Series | Sequence, *, max_items: int | None = 3000, seed: int = DEFAULT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Return the cosine similarity of every item pair that shares a genre, and of every pair that shares none.

    Items without a genre and items whose vector is all zeros (an empty
    text) take part in no pair. Rows are L2-normalised here, so any vectors
    work. Each unordered pair counts once.

    Args:
        vectors (numpy.ndarray): Shape ``(items, dim)``.
        genres (pandas.Series or sequence): One list of genres per row.
        max_items (int, optional): Use a seeded random subset of this many
            eligible items when there are more, since the pair count grows
            with the square of the item count. None uses every item.
        seed (int): Seed of that subset.

    Returns:
        tuple: ``(shared, disjoint)``, float64 arrays of cosines: pairs with
        at least one genre in common, and pairs with none.

    Raises:
        DataError: If an element of ``genres`` is not a list.
        ValueError: If ``vectors`` is not 2-D with one row per genre list,
            contains NaN or infinity, or ``max_items`` is below 2.
    """
    where = "genre_pair_cosines"
    values = np.asarray(vectors, dtype=np.float64)
    sets = _genre_sets(genres, where=where)
    if values.ndim != 2 or values.shape[0] != len(sets):
        raise ValueError(f"{where}: vectors must have shape ({len(sets)}, dim), one row per genre list; got {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{where}: vectors contain NaN or infinity")
    if max_items is not None and (isinstance(max_items, bool) or not isinstance(max_items, (int, np.integer)) or max_items < 2):
        raise ValueError(f"{where}: max_items must be an integer >= 2 or None; got {max_items!r}")

    norms = np.linalg.norm(values, axis=1)
    eligible = np.flatnonzero((norms > 0) & np.array([len(s) > 0 for s in sets], dtype=bool))
    if max_items is not None and len(eligible) > max_items:
        rng = np.random.default_rng(seed)
        eligible = np.sort(rng.choice(eligible, size=max_items, replace=False))
        logger.info("%s: using %d of the eligible items (seed %d)", where, max_items, seed)
    unit = values[eligible] / norms[eligible, None]

    names = sorted(set().union(*(sets[i] for i in eligible))) if len(eligible) else []
    column = {name: j for j, name in enumerate(names)}
    one_hot = np.zeros((len(eligible), len(names)), dtype=np.float32)
    for row, item in enumerate(eligible):
        one_hot[row, [column[name] for name in sets[item]]] = 1.0
    shares_genre = (one_hot @ one_hot.T) > 0  # (m, m)
    cosines = unit @ unit.T  # (m, m)
    upper = np.triu_indices(len(eligible), k=1)
    pair_cosines, pair_shares = cosines[upper], shares_genre[upper]
    return pair_cosines[pair_shares], pair_cosines[~pair_shares]


def genre_cosine_gap(
    vectors: np.ndarray | Mapping[str, np.ndarray],
    genres: pd.Series | Sequence,
    *,
    max_items: int | None = 3000,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """Compare the mean cosine of item pairs that share a genre with pairs that share none.

    A positive gap means the vectors place items of a genre closer together
    than items of different genres. The gap does not show whether the vectors
    help a recommender, and a text that names the genres raises it by itself.

    Args:
        vectors (numpy.ndarray or Mapping): One matrix, or several by name
            (for example one per text template), each one row per item.
        genres (pandas.Series or sequence): One list of genres per item.
        max_items, seed: As in :func:`genre_pair_cosines`.

    Returns:
        pandas.DataFrame: One row per matrix (index ``vectors``) with columns
        ``mean cosine, shared genre``, ``mean cosine, no shared genre``,
        ``gap``, ``pairs, shared genre`` and ``pairs, no shared genre``.
        A mean over no pairs is NaN.
    """
    named = {"vectors": vectors} if not isinstance(vectors, Mapping) else dict(vectors)
    rows = []
    for name, matrix in named.items():
        shared, disjoint = genre_pair_cosines(matrix, genres, max_items=max_items, seed=seed)
        mean_shared = float(shared.mean()) if len(shared) else float("nan")
        mean_disjoint = float(disjoint.mean()) if len(disjoint) else float("nan")
        rows.append((name, mean_shared, mean_disjoint, mean_shared - mean_disjoint, len(shared), len(disjoint)))
    columns = [
        "vectors",
        "mean cosine, shared genre",
        "mean cosine, no shared genre",
        "gap",
        "pairs, shared genre",
        "pairs, no shared genre",
    ]
    return pd.DataFrame(rows, columns=columns).set_index("vectors")


def plot_pair_cosines(shared: np.ndarray, disjoint: np.ndarray, *, ax=None, bins: int = 50, title: str | None = None):
    """Overlay the cosine distributions of pairs sharing a genre and pairs sharing none, with their means.

    Args:
        shared, disjoint (numpy.ndarray): Cosines from :func:`genre_pair_cosines`.
        ax (matplotlib.axes.Axes, optional): Where to draw; default a new figure.
        bins (int): Histogram bins over the joint range.
        title (str, optional): Axes title.

    Returns:
        matplotlib.axes.Axes: The axes drawn on.

    Raises:
        ValueError: If both arrays are empty.
    """
    shared, disjoint = np.asarray(shared, dtype=float), np.asarray(disjoint, dtype=float)
    if len(shared) == 0 and len(disjoint) == 0:
        raise ValueError("plot_pair_cosines: both cosine arrays are empty; no item pair has genres and a vector")
    joined = np.concatenate([shared, disjoint])
    edges = np.linspace(joined.min(), joined.max() + 1e-9, bins + 1)
    if ax is None:
        _, ax = new_axes()
    for values, colour, label in ((disjoint, PALETTE[1], "no shared genre"), (shared, PALETTE[0], "shared genre")):
        if len(values) == 0:
            continue
        ax.hist(values, bins=edges, density=True, histtype="stepfilled", alpha=0.45, color=colour, label=f"{label} ({len(values):,} pairs)")
        ax.axvline(values.mean(), color=colour, ls="--", lw=0.9)
    ax.set_xlabel("cosine similarity of an item pair")
    ax.set_ylabel("density")
    ax.set_ylim(top=ax.get_ylim()[1] * 1.3)  # headroom, so the legend sits above the bars
    ax.legend(frameon=False, loc="upper left")
    if title:
        ax.set_title(title)
    return ax


def nearest_titles(
    vectors: np.ndarray, titles: pd.Series, queries: Sequence[str], *, k: int = 5
) -> pd.DataFrame:
    """List the ``k`` items nearest to each query item by cosine similarity.

    The query itself is left out. Equal cosines keep catalog order. An
    all-zero vector has cosine 0 with everything.

    Args:
        vectors (numpy.ndarray): Shape ``(items, dim)``, rows aligned with ``titles``.
        titles (pandas.Series): Title per item, indexed by item id.
        queries (sequence of str): Item ids to look up.
        k (int): Neighbours per query, at most ``items - 1``.

    Returns:
        pandas.DataFrame: Indexed by (``query``, ``rank``) with ``rank`` from
        1; columns ``item_id``, ``title`` and ``cosine``.

    Raises:
        ValueError: If the row count differs from ``len(titles)``, ``k`` is
            out of range, or the title index has repeated ids.
        KeyError: If a query id is not in the index of ``titles``.
    """
    values = np.asarray(vectors, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] != len(titles):
        raise ValueError(f"nearest_titles: vectors must have shape ({len(titles)}, dim), one row per title; got {values.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(titles) - 1:
        raise ValueError(f"nearest_titles: k must be an integer from 1 to {len(titles) - 1}; got {k!r}")
    ids = pd.Index([str(item) for item in titles.index])
    if ids.has_duplicates:
        raise ValueError(f"nearest_titles: item id {ids[ids.duplicated()][0]!r} appears more than once in titles")
    unknown = [query for query in queries if str(query) not in ids]
    if unknown:
        raise KeyError(f"nearest_titles: query item(s) {unknown} are not in the titles index")

    norms = np.linalg.norm(values, axis=1)
    unit = np.divide(values, norms[:, None], out=np.zeros_like(values), where=norms[:, None] > 0)
    rows = []
    for query in queries:
        position = ids.get_loc(str(query))
        scores = unit @ unit[position]
        scores[position] = -np.inf  # never the query itself
        order = np.argsort(-scores, kind="stable")[:k]
        for rank, neighbour in enumerate(order, start=1):
            rows.append((titles.iloc[position], rank, ids[neighbour], titles.iloc[neighbour], float(scores[neighbour])))
    table = pd.DataFrame(rows, columns=["query", "rank", COL_ITEM, "title", "cosine"])
    return table.set_index(["query", "rank"])


# ---------------------------------------------------------------------------- media features

# Readable summary columns of the two media vectors (the histogram and per-band columns stay out).
VIDEO_SUMMARY_COLUMNS = (
    "brightness_mean",
    "contrast_mean",
    "motion_mean",
    "shot_change_fraction",
    "shot_changes_per_second",
)
AUDIO_SUMMARY_COLUMNS = ("rms_dbfs_mean", "spectral_centroid_hz_mean", "zero_crossing_rate_mean", "tempo_bpm")


def media_feature_table(
    video,
    audio,
    *,
    video_columns: Sequence[str] = VIDEO_SUMMARY_COLUMNS,
    audio_columns: Sequence[str] = AUDIO_SUMMARY_COLUMNS,
) -> pd.DataFrame:
    """Join a few readable video and audio features, the audio flags and the vector sizes into one table.

    Args:
        video: A :class:`vidrec_lab.features.video.VideoFeatureResult`
            (``extract_video_features``).
        audio: A :class:`vidrec_lab.features.audio.AudioFeatureResult`
            (``extract_audio_features``).
        video_columns, audio_columns (sequence of str): Feature names to show.

    Returns:
        pandas.DataFrame: One row per item with a video or audio vector
        (index ``item_id``): the chosen features, ``video_dim`` and
        ``audio_dim`` (vector lengths), then ``duration_s`` and the audio
        flags. An item that failed in one extractor has NaN in its columns.

    Raises:
        KeyError: If a requested feature name is not in the result's names
            (the message lists the names available).
    """
    parts = []
    for result, columns, kind in ((video, video_columns, "video"), (audio, audio_columns, "audio")):
        unknown = [column for column in columns if column not in result.names]
        if unknown:
            raise KeyError(f"media_feature_table: {kind} features {unknown} not found; available: {list(result.names)}")
        frame = result.to_frame()[list(columns)]
        frame[f"{kind}_dim"] = len(result.names)
        parts.append(frame.loc[~np.asarray(result.missing, dtype=bool)])
    table = parts[0].join(parts[1], how="outer")
    flags = audio.flags.set_index(COL_ITEM)
    table = table.join(flags, how="left")
    table.index.name = COL_ITEM
    return table
