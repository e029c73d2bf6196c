"""Turn one run record, or two side by side, into a Markdown and an HTML report, and copy a figure gallery.

A run folder (``outputs/runs/<run-id>/``, written by :mod:`vidrec_lab.runner`)
holds ``run.json``, the metrics files the notebooks wrote and the figures they
saved. The report lists the parameters, versions, hardware and wall time per
notebook, renders every metrics file as a table and embeds the figures. With a
second run it shows both runs' values and their difference, so a rerun with
the same seed can be checked at a glance.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path

import pandas as pd

from vidrec_lab.config import project_home
from vidrec_lab.io import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)

_VALUE_COLUMNS = ("value", "ci_low", "ci_high")


def resolve_run(run: str | Path) -> Path:
    """Return the folder of ``run``: a path, or a run id under ``outputs/runs``."""
    path = Path(run)
    if not (path / "run.json").is_file():
        path = project_home() / "outputs" / "runs" / str(run)
    if not (path / "run.json").is_file():
        runs = sorted(p.name for p in (project_home() / "outputs" / "runs").glob("*") if (p / "run.json").is_file())
        raise FileNotFoundError(f"run {str(run)!r} not found: no run.json in {path}; runs present: {runs}")
    return path


def metrics_tables(run_folder: Path) -> dict[str, pd.DataFrame]:
    """Return the tables of a run's metrics files, keyed by file stem (and field, for nested files).

    A file's ``metrics`` entry may be a list of records, a dict with a
    ``table`` list (an evaluation result), or a dict. In a dict, the scalar
    values make one ``metric``/``value`` table under the file stem; a list of
    records makes its own table ``<stem>: <field>``, and so does a dict of
    scalars (for example a ``serving`` block).
    """
    tables = {}
    for path in sorted((run_folder / "metrics").glob("*.json")):
        payload = json.loads(path.read_text(encoding="utf-8"))
        metrics = payload.get("metrics")
        if isinstance(metrics, dict) and isinstance(metrics.get("table"), list):
            metrics = metrics["table"]
        if isinstance(metrics, list):
            tables[path.stem] = pd.DataFrame(metrics)
        elif isinstance(metrics, dict):
            if (scalars := _scalar_table(metrics)) is not None:
                tables[path.stem] = scalars
            for key, value in metrics.items():
                if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
                    tables[f"{path.stem}: {key}"] = pd.DataFrame(value)
                elif isinstance(value, dict) and (scalars := _scalar_table(value)) is not None:
                    tables[f"{path.stem}: {key}"] = scalars
        else:
            logger.warning("%s: 'metrics' is neither a list nor a dict; left out of the report", path)
    return tables


def _scalar_table(mapping: dict) -> pd.DataFrame | None:
    """Return the scalar entries of ``mapping`` as a ``metric``/``value`` table, or None when it has none."""
    scalars = {k: v for k, v in mapping.items() if not isinstance(v, (list, dict))}
    if not scalars:
        return None
    return pd.DataFrame({"metric": list(scalars), "value": list(scalars.values())})


def _format_number(value) -> str:
    """Format a table cell: four significant digits, whole numbers of 10,000 and more with separators."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if pd.isna(value):
        return ""
    if abs(value) >= 1e4:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _side_by_side(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    # Rows are matched on every column that names something (model, metric, k, ...), never on measured floats.
    keys = [
        c
        for c in first.columns
        if c in second.columns and c not in _VALUE_COLUMNS and c != "n_users" and not pd.api.types.is_float_dtype(first[c])
    ]
    if not keys or "value" not in first.columns or "value" not in second.columns:
        return first
    joined = first[keys + ["value"]].merge(second[keys + ["value"]], on=keys, how="outer", suffixes=(" (A)", " (B)"))
    joined["difference"] = pd.to_numeric(joined["value (B)"], errors="coerce") - pd.to_numeric(joined["value (A)"], errors="coerce")
    return joined


def _markdown_table(frame: pd.DataFrame) -> str:
    shown = frame.copy()
    for column in shown.columns:
        if pd.api.types.is_numeric_dtype(shown[column]) or shown[column].dtype == object:
            shown[column] = shown[column].map(_format_number)
    header = "| " + " | ".join(str(c) for c in shown.columns) + " |"
    rule = "| " + " | ".join("---" for _ in shown.columns) + " |"
    rows = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def build_report(run: str | Path, other: str | Path | None = None) -> tuple[str, str]:
    """Return the report of ``run`` (compared with ``other`` when given) as (markdown, html)."""
    folder = resolve_run(run)
    record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    other_folder = resolve_run(other) if other is not None else None
    other_record = json.loads((other_folder / "run.json").read_text(encoding="utf-8")) if other_folder else None

    title = f"vidrec_lab run {record['run_id']}" + (f" vs {other_record['run_id']}" if other_record else "")
    lines = [f"# {title}", ""]
    params = {**record["params"], "data folder (VIDREC_LAB_DATA)": record.get("data_folder")}
    lines += ["## Parameters", "", _markdown_table(pd.DataFrame({"parameter": list(params), "value": [str(v) for v in params.values()]})), ""]
    lines += ["## Notebooks", ""]
    times = pd.DataFrame(record["notebooks"])[["name", "status", "seconds"]]
    if other_record:
        times = times.merge(pd.DataFrame(other_record["notebooks"])[["name", "seconds"]], on="name", how="outer", suffixes=(" (A)", " (B)"))
    lines += [_markdown_table(times), "", f"Total: {record.get('total_seconds', 0):.1f} s", ""]
    lines += ["## Metrics", ""]
    tables = metrics_tables(folder)
    other_tables = metrics_tables(other_folder) if other_folder else {}
    for name, frame in tables.items():
        shown = _side_by_side(frame, other_tables[name]) if name in other_tables else frame
        lines += [f"### {name}", "", _markdown_table(shown), ""]
    figures = sorted((folder / "figures").glob("*.png"))
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{p.stem}](figures/{p.name})\n" for p in figures]
    lines += ["## Environment", "", _markdown_table(pd.DataFrame({"package": list(record["versions"]), "version": [str(v) for v in record["versions"].values()]})), ""]
    lines += [_markdown_table(pd.DataFrame({"hardware": list(record["hardware"]), "value": [str(v) for v in record["hardware"].values()]})), ""]
    markdown = "\n".join(lines)
    return markdown, _to_html(title, markdown)


def _to_html(title: str, markdown: str) -> str:
    """Render the report's Markdown subset (headings, tables, images, paragraphs) as HTML."""
    body, table = [], []

    def flush_table():
        if not table:
            return
        rows = [[html.escape(cell.strip().replace("\\|", "|")) for cell in row.strip("|").split(" | ")] for row in table if not row.startswith("| ---")]
        head = "".join(f"<th>{c}</th>" for c in rows[0])
        cells = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows[1:])
        body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
        table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
        elif line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            body.append(f'<p><img src="{html.escape(src.rstrip(")").strip())}" alt="{html.escape(alt)}" width="640"></p>')
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    flush_table()
    style = "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"


def write_report(run: str | Path, other: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into the run folder and return both paths."""
    folder = resolve_run(run)
    markdown, page = build_report(run, other)
    suffix = f"-vs-{resolve_run(other).name}" if other is not None else ""
    md_path = atomic_write_text(folder / f"report{suffix}.md", markdown)
    html_path = atomic_write_text(folder / f"report{suffix}.html", page)
    logger.info("wrote %s and %s", md_path, html_path)
    return md_path, html_path


# Figures shown in the README gallery: one per notebook, from a fast-profile run. Figures that show
# frames of the data set's videos are left out: they are copies of the data, which is not redistributed.
GALLERY_FIGURES = (
    "00_quickstart_metric_comparison",
    "01_data_preprocessing_top_tags",
    "02_content_features_text_embedding_map",
    "03_multimodal_fusion_fusion_comparison",
    "04_bert_finetuning_embeddings_before_after",
    "05_recommendation_warm_comparison",
    "06_evaluation_and_ab_testing_ab_lifts",
    "07_explanations_lime_shap_lime_words",
    "08_privacy_and_efficiency_privacy_utility",
)


def build_gallery(
    run: str | Path,
    dest: str | Path,
    names: tuple[str, ...] | list[str] = GALLERY_FIGURES,
    *,
    max_width: int = 900,
) -> list[Path]:
    """Copy the named PNG figures of a run into ``dest``, scaled down to at most ``max_width`` pixels wide.

    The gallery is the only place figures are committed (``docs/gallery/``
    for the README), so the copies are kept small: scaled with Lanczos
    resampling and saved as optimised 8-bit palette PNGs. Each file is
    written through a temporary file and renamed, so a failed copy leaves
    no half-written image.

    Args:
        run (str or path): Run id under ``outputs/runs``, or a run folder.
        dest (str or path): Gallery folder (created when missing).
        names (sequence of str): Figure stems as saved by ``viz.save_figure``
            (``<notebook>_<name>``).
        max_width (int): Width limit in pixels.

    Returns:
        list of pathlib.Path: The files written, in the order of ``names``.

    Raises:
        FileNotFoundError: When a named figure is not in the run, listing the figures it has.
        ValueError: When ``max_width`` is not a positive integer.
    """
    from PIL import Image

    if isinstance(max_width, bool) or not isinstance(max_width, int) or max_width < 1:
        raise ValueError(f"build_gallery: max_width must be a positive integer; got {max_width!r}")
    folder = resolve_run(run) / "figures"
    available = sorted(p.stem for p in folder.glob("*.png"))
    missing = [name for name in names if name not in available]
    if missing:
        raise FileNotFoundError(f"build_gallery: figure(s) {missing} not in {folder}; it has {available}")
    dest = Path(dest)
    written = []
    for name in names:
        with Image.open(folder / f"{name}.png") as image:
            image = image.convert("RGB")
            if image.width > max_width:
                height = round(image.height * max_width / image.width)
                image = image.resize((max_width, height), Image.Resampling.LANCZOS)
            small = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
            target = dest / f"{name}.png"
            with atomic_path(target) as tmp:
                small.save(tmp, format="PNG", optimize=True)
        written.append(target)
        logger.info("gallery: %s (%d KiB)", target, target.stat().st_size // 1024)
    return written

