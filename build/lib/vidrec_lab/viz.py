"""One figure style for the whole suite, and :func:`save_figure`, the only way figures are saved.

The style is sized for a single column of a two-column paper (3.4 in wide at
300 dpi), uses the Okabe-Ito colour-blind-safe palette, and puts a CJK font
in the fallback list so Chinese titles and tags render instead of showing
empty boxes. Plot functions take an ``Axes`` (or create one) and return it;
none of them draws on pyplot's current figure.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path
from typing import Sequence

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
from matplotlib import font_manager

from vidrec_lab.config import figures_dir
from vidrec_lab.io import atomic_path

logger = logging.getLogger(__name__)

# Okabe & Ito (2008), "Color Universal Design": distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")

# Fonts that carry CJK glyphs, in order of preference; the first one installed is used as fallback.
CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Microsoft YaHei",
    "SimHei",
    "PingFang SC",
    "Heiti SC",
    "AR PL UMing CN",
)

# How metric names are written on axes and in titles.
METRIC_LABELS = {
    "ndcg": "NDCG",
    "recall": "Recall",
    "precision": "Precision",
    "mrr": "MRR",
    "map": "MAP",
    "hit_rate": "HitRate",
    "f1": "F1",
    "coverage": "Coverage",
    "novelty": "Novelty",
    "diversity": "Diversity",
}

COLUMN_WIDTH_IN = 3.4  # one column of a two-column paper
PAGE_WIDTH_IN = 7.0  # both columns
FIGURE_FORMATS = ("png", "pdf")

_FIGURE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def find_cjk_font() -> str | None:
    """Return the name of an installed font with CJK glyphs, or None."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    for name in CJK_FONTS:
        if name in installed:
            return name
    return None


def set_style() -> str | None:
    """Apply the suite's figure style to matplotlib and return the CJK font in use (or None).

    Without a CJK font, a warning names the Debian and conda packages that
    provide one; Latin text still renders.
    """
    cjk = find_cjk_font()
    # Matplotlib falls back glyph by glyph across the fonts listed in font.family (3.6 and later),
    # not across the generic sans-serif list, so the CJK font goes into font.family itself.
    families = ["DejaVu Sans"] + ([cjk] if cjk else [])
    matplotlib.rcParams.update(
        {
            "figure.figsize": (COLUMN_WIDTH_IN, COLUMN_WIDTH_IN * 0.75),
            "figure.dpi": 110,
            "savefig.dpi": 300,
            "savefig.bbox": "tight",
            "font.family": families,
            "font.size": 8,
            "axes.titlesize": 9,
            "axes.labelsize": 8,
            "legend.fontsize": 7,
            "xtick.labelsize": 7,
            "ytick.labelsize": 7,
            "axes.prop_cycle": matplotlib.cycler(color=list(PALETTE)),
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.unicode_minus": False,  # the CJK fallback fonts lack U+2212
            "pdf.fonttype": 42,  # embed TrueType so PDF text stays editable
        }
    )
    if cjk is None:
        warnings.warn(
            "no CJK font found, so Chinese text in figures will show as boxes; "
            "install one (Debian: apt-get install fonts-wqy-microhei or fonts-noto-cjk; "
            "conda: conda install -c conda-forge font-ttf-noto-cjk) and restart the kernel",
            stacklevel=2,
        )
    return cjk


def new_axes(ncols: int = 1, nrows: int = 1, *, width: float = COLUMN_WIDTH_IN, aspect: float = 0.75, **kwargs):
    """Create a figure sized for a paper column (or ``width`` inches) and return ``(fig, axes)``."""
    height = width * aspect * nrows / max(ncols, 1)
    return plt.subplots(nrows, ncols, figsize=(width, height), constrained_layout=True, **kwargs)


def save_figure(fig, name: str, *, notebook: str | None = None, formats: Sequence[str] = FIGURE_FORMATS, folder: str | os.PathLike | None = None) -> list[Path]:
    """Save ``fig`` as ``figures/<notebook>_<name>.<format>`` for every format and return the paths.

    Each file is written to a temporary name and renamed, so a figure on disk
    is always complete. The notebook prefix defaults to the ``VIDREC_LAB_NOTEBOOK``
    environment variable, which the runner sets.

    Args:
        fig (matplotlib.figure.Figure): Figure to save.
        name (str): Stable short name (letters, digits, ``_``, ``-``, ``.``).
        notebook (str, optional): Prefix, e.g. ``"00_quickstart"``.
        formats (sequence of str): File formats; PNG for slides, PDF for papers.
        folder (path, optional): Target folder; default ``figures/`` of the project.
    """
    if not _FIGURE_NAME.match(name):
        raise ValueError(f"figure name {name!r} is invalid; use letters, digits, '_', '-' and '.'")
    unknown = [f for f in formats if f not in ("png", "pdf", "svg")]
    if unknown:
        raise ValueError(f"figure formats must be among ['pdf', 'png', 'svg']; got {unknown}")
    notebook = notebook or os.environ.get("VIDREC_LAB_NOTEBOOK")
    stem = f"{notebook}_{name}" if notebook else name
    folder = Path(folder) if folder is not None else figures_dir()
    paths = []
    for fmt in formats:
        target = folder / f"{stem}.{fmt}"
        with atomic_path(target) as tmp:
            # PDF metadata carries a creation date by default; drop it so reruns give identical files.
            metadata = {"CreationDate": None} if fmt == "pdf" else ({"Software": None} if fmt == "png" else None)
            fig.savefig(tmp, format=fmt, metadata=metadata)
        paths.append(target)
    logger.info("saved figure %s (%s)", stem, ", ".join(formats))
    return paths


def bar_compare(values, *, ax=None, title: str | None = None, ylabel: str | None = None, errors=None):
    """Draw grouped bars from a DataFrame (index: groups, columns: series) and return the Axes."""
    if ax is None:
        _, ax = new_axes()
    n_series = len(values.columns)
    width = 0.8 / max(n_series, 1)
    positions = range(len(values.index))
    for j, column in enumerate(values.columns):
        offsets = [p - 0.4 + width * (j + 0.5) for p in positions]
        err = None if errors is None else errors[column].to_numpy()
        ax.bar(offsets, values[column].to_numpy(), width=width, label=str(column), yerr=err, capsize=2)
    ax.set_xticks(list(positions))
    ax.set_xticklabels([str(i) for i in values.index], rotation=0)
    if title:
        ax.set_title(title)
    if ylabel:
        ax.set_ylabel(ylabel)
    if n_series > 1:
        ax.legend(frameon=False)
    return ax


def plot_long_tail(interactions, *, ax=None, col_item: str = "item_id"):
    """Plot interactions per item against item rank (log-log): the popularity long tail."""
    import numpy as np

    if ax is None:
        _, ax = new_axes()
    counts = np.sort(interactions[col_item].value_counts().to_numpy())[::-1]
    ranks = np.arange(1, len(counts) + 1)
    ax.loglog(ranks, counts, color=PALETTE[0], lw=1.2)
    head = max(1, int(round(0.2 * len(counts))))
    share = counts[:head].sum() / max(counts.sum(), 1)
    ax.axvline(head, color=PALETTE[3], ls="--", lw=0.8)
    ax.text(0.97, 0.97, f"top 20% of items:\n{share:.0%} of interactions", transform=ax.transAxes, ha="right", va="top", fontsize=6)
    ax.set_xlabel("item rank by popularity")
    ax.set_ylabel("interactions")
    ax.set_title("Item popularity")
    return ax


def plot_user_activity(interactions, *, ax=None, col_user: str = "user_id", bins: int = 30):
    """Plot the distribution of interactions per user (log-spaced histogram)."""
    import numpy as np

    if ax is None:
        _, ax = new_axes()
    counts = interactions[col_user].value_counts().to_numpy()
    edges = np.logspace(np.log10(max(counts.min(), 1)), np.log10(counts.max() + 1), bins)
    ax.hist(counts, bins=edges, color=PALETTE[2], edgecolor="white", lw=0.3)
    ax.set_xscale("log")
    # Minor-tick labels of a log axis over one or two decades overlap; keep the decade labels only.
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.axvline(np.median(counts), color=PALETTE[3], ls="--", lw=0.8, label=f"median {np.median(counts):.0f}")
    ax.legend(frameon=False)
    ax.set_xlabel("interactions per user")
    ax.set_ylabel("users")
    ax.set_title("User activity")
    return ax


def plot_value_distribution(interactions, *, ax=None, col_event: str = "event", col_value: str = "value"):
    """Plot the count of each (event, value) pair: rating stars, or view/like/favourite counts."""
    if ax is None:
        _, ax = new_axes()
    events = interactions[col_event].astype(str)
    if (events == "rating").all():
        counts = interactions[col_value].value_counts().sort_index()
        ax.bar([f"{v:g}" for v in counts.index], counts.to_numpy(), color=PALETTE[1])
        ax.set_xlabel("rating")
    else:
        counts = events.value_counts()
        ax.bar(counts.index.tolist(), counts.to_numpy(), color=PALETTE[1])
        ax.set_xlabel("event")
    ax.set_ylabel("interactions")
    ax.set_title("Feedback")
    return ax


def plot_metric_comparison(table, *, metric: str, k: int, ax=None):
    """Plot one metric at one cutoff per model with its confidence interval.

    ``table`` has the columns of :class:`vidrec_lab.evaluation.protocol.EvaluationResult`'s
    table: model, metric, k, value, ci_low, ci_high.
    """
    if ax is None:
        _, ax = new_axes()
    rows = table[(table["metric"] == metric) & (table["k"] == k)].sort_values("value")
    values = rows["value"].to_numpy()
    lower = values - rows["ci_low"].to_numpy()
    upper = rows["ci_high"].to_numpy() - values
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(rows))]
    ax.barh(rows["model"].astype(str), values, xerr=[lower, upper], color=colors, capsize=2)
    label = METRIC_LABELS.get(metric, metric)
    ax.set_xlabel(f"{label}@{k} (95% CI)")
    ax.set_title(f"{label}@{k} by model")
    return ax
