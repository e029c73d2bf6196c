"""Run every benchmark in this folder, one at a time, and print one summary table.

Each ``bench_*.py`` script runs in its own process (two torch jobs at once on
a 2-core laptop stall each other) and writes its own JSON file under
``outputs/benchmarks/``. This script records each process's wall time and
peak resident memory (``os.wait4``, which includes the child's own children),
adds the per-notebook wall times of the latest fast-profile run under
``outputs/runs/`` when there is one, prints the headline numbers of every
result file, and writes them all to ``outputs/benchmarks/summary.json``.

Usage::

    .venv/bin/python benchmarks/run_all.py [--only text_encoder retrieval] [--data PATH/ml-100k]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from vidrec_lab.config import outputs_dir, project_home  # noqa: E402
from vidrec_lab.io import atomic_write_json  # noqa: E402
from vidrec_lab.runner import hardware_info  # noqa: E402


def _run(script: Path, extra: list[str]) -> dict:
    """Run one benchmark script and return its exit status, wall time and peak memory."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(script), *extra], cwd=str(project_home()))
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "script": script.name,
        "exit_status": process.returncode,
        "wall_s": round(time.perf_counter() - started, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
    }


def _headline(payload: dict, prefix: str = "") -> dict:
    """Return the scalar numbers and short strings of a result file, flattened one level deep."""
    out = {}
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool) or isinstance(value, (int, float)):
            out[name] = value
        elif isinstance(value, str) and len(value) <= 40:
            out[name] = value
        elif isinstance(value, dict) and not prefix:
            out.update(_headline(value, prefix=f"{key}."))
    return out


def _latest_fast_run() -> dict | None:
    """Return the per-notebook times of the newest complete fast-profile run under ``outputs/runs``."""
    from vidrec_lab.runner import list_notebooks

    expected = {path.stem for path in list_notebooks()}
    records = []
    for path in (project_home() / "outputs" / "runs").glob("*/run.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        # Only a run in which every notebook ran and finished counts: a subset would understate the total.
        finished = {nb["name"] for nb in record["notebooks"] if nb["status"] == "ok"}
        complete = finished == expected
        if record["params"].get("PROFILE") == "fast" and complete:
            records.append((path.stat().st_mtime, record))
    if not records:
        return None
    record = max(records, key=lambda pair: pair[0])[1]
    return {
        "run_id": record["run_id"],
        "total_s": record.get("total_seconds"),
        "peak_kernel_rss_mib": record.get("peak_kernel_rss_mib"),
        "notebooks_s": {nb["name"]: nb["seconds"] for nb in record["notebooks"]},
    }


# One row per measured target: (label, result file, path into its JSON, unit, target text, check).
# The check is None where the benchmark states no target.
HEADLINES = [
    ("TextEncoder time / sentence-transformers time", "text_encoder", ("best_ratio_text_encoder_over_sentence_transformers",), "x", "<= 1", lambda v: v <= 1.0),
    ("cached rerun of item-text encoding", "text_encoder", ("cached_rerun_seconds",), "s", "< 1 s", lambda v: v < 1.0),
    ("two-tower training, one ml-100k epoch", "retrieval", ("two_tower_movielens", "train_s"), "s", "", None),
    ("top-10 for all 943 users over 1682 items", "retrieval", ("two_tower_movielens", "recommend_s"), "s", "< 1 s", lambda v: v < 1.0),
    ("exact top-10, 1000 users x 200k items", "retrieval", ("large_catalog", "exact_s"), "s", "", None),
    ("int8 encoder speed-up", "quantization", ("settings", "int8", "speedup"), "x", ">= 1.5x", lambda v: v >= 1.5),
    ("int8 mean cosine to float32", "quantization", ("settings", "int8", "mean_cosine"), "", "> 0.98", lambda v: v > 0.98),
    ("one top-10 request from cached vectors, median", "quantization", ("serving", "median_ms"), "ms", "", None),
    ("LIME explanation of one recommendation, max", "explain", ("lime", "max_seconds"), "s", "< 20 s", lambda v: v < 20.0),
]


def _lookup(payload, path: tuple[str, ...]):
    """Follow ``path`` into a result file; a list step picks the entry whose ``setting`` is that name."""
    value = payload
    for step in path:
        if isinstance(value, list):
            value = next((row for row in value if isinstance(row, dict) and row.get("setting") == step), None)
        elif isinstance(value, dict):
            value = value.get(step)
        if value is None:
            return None
    return value


def headline_rows(payloads: dict[str, dict], demo: dict | None, processes: list[dict]) -> list[tuple[str, str, str, str]]:
    """Return (measure, value, target, met) rows for the printed table and the README."""
    rows = []
    for label, name, path, unit, target, check in HEADLINES:
        value = _lookup(payloads.get(name, {}), path)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            rows.append((label, "not run", target, ""))
            continue
        met = ""
        if check is not None:
            met = "yes" if check(value) else "NO"
        rows.append((label, f"{value:.3g} {unit}".strip(), target, met))
    if demo:
        total = demo["total_s"]
        rows.append((f"make demo, fast profile (run {demo['run_id']})", f"{total:.0f} s", "< 1200 s", "yes" if total < 1200 else "NO"))
        peak = demo["peak_kernel_rss_mib"]
        if peak is not None:
            rows.append(("peak memory of a demo notebook kernel", f"{peak:.0f} MiB", "< 4096 MiB", "yes" if peak < 4096 else "NO"))
    else:
        rows.append(("make demo, fast profile", "no complete fast run under outputs/runs", "< 1200 s", ""))
    if processes:
        peak = max(p["peak_rss_mib"] for p in processes)
        rows.append(("peak memory of a benchmark process", f"{peak:.0f} MiB", "< 4096 MiB", "yes" if peak < 4096 else "NO"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names without the bench_ prefix (default: all)")
    parser.add_argument("--data", default=None, help="MovieLens-100k folder passed to benchmarks that take --data")
    parser.add_argument("--summarize-only", action="store_true", help="run nothing; print the table from the result files already written")
    args = parser.parse_args(argv)

    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        wanted = {f"bench_{name}.py" for name in args.only}
        unknown = wanted - {s.name for s in scripts}
        if unknown:
            parser.error(f"unknown benchmark(s) {sorted(unknown)}; available: {[s.stem[6:] for s in scripts]}")
        scripts = [s for s in scripts if s.name in wanted]
    extra = ["--data", args.data] if args.data else []

    processes = []
    for script in [] if args.summarize_only else scripts:
        sys.stderr.write(f"running {script.name} ...\n")
        takes_data = "--data" in script.read_text(encoding="utf-8")
        processes.append(_run(script, extra if takes_data else []))

    payloads = {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(outputs_dir("benchmarks").glob("*.json"))
        if path.name != "summary.json"
    }
    demo = _latest_fast_run()
    rows = headline_rows(payloads, demo, processes)
    summary = {
        "hardware": hardware_info(),
        "processes": processes,
        "headlines": [dict(zip(("measure", "value", "target", "met"), row)) for row in rows],
        "results": {name: _headline(payload) for name, payload in payloads.items()},
        "demo_fast_profile": demo,
    }
    atomic_write_json(outputs_dir("benchmarks") / "summary.json", summary)

    lines = []
    if processes:
        lines += [f"{'benchmark':<22} {'exit':>4} {'wall s':>8} {'peak MiB':>9}"]
        lines += [f"{p['script'][6:-3]:<22} {p['exit_status']:>4} {p['wall_s']:>8.1f} {p['peak_rss_mib']:>9.0f}" for p in processes]
        lines.append("")
    hardware = summary["hardware"]
    lines.append(f"machine: {hardware.get('cpus')} CPUs, {hardware.get('memory_gib')} GiB, CUDA {hardware.get('cuda')}")
    width = max(len(row[0]) for row in rows)
    lines.append(f"{'measure':<{width}}  {'value':>12}  {'target':>10}  met")
    lines += [f"{measure:<{width}}  {value:>12}  {target:>10}  {met}" for measure, value, target, met in rows]
    if demo:
        lines.append(f"\ndemo run {demo['run_id']}, seconds per notebook:")
        lines += [f"  {name}: {seconds} s" for name, seconds in demo["notebooks_s"].items()]
    lines.append(f"\nevery number: {outputs_dir('benchmarks') / 'summary.json'}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0 if all(p["exit_status"] == 0 for p in processes) else 1


if __name__ == "__main__":
    sys.exit(main())
