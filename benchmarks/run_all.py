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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names without the bench_ prefix (default: all)")
    parser.add_argument("--data", default=None, help="MovieLens-100k folder passed to benchmarks that take --data")
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
    for script in scripts:
        sys.stderr.write(f"running {script.name} ...\n")
        takes_data = "--data" in script.read_text(encoding="utf-8")
        processes.append(_run(script, extra if takes_data else []))

    results = {}
    for path in sorted(outputs_dir("benchmarks").glob("*.json")):
        if path.name != "summary.json":
            results[path.stem] = _headline(json.loads(path.read_text(encoding="utf-8")))
    summary = {"hardware": hardware_info(), "processes": processes, "results": results, "demo_fast_profile": _latest_fast_run()}
    atomic_write_json(outputs_dir("benchmarks") / "summary.json", summary)

    lines = [f"{'benchmark':<22} {'exit':>4} {'wall s':>8} {'peak MiB':>9}"]
    lines += [f"{p['script'][6:-3]:<22} {p['exit_status']:>4} {p['wall_s']:>8.1f} {p['peak_rss_mib']:>9.0f}" for p in processes]
    for name, values in results.items():
        lines.append(f"\n[{name}]")
        lines += [f"  {key}: {value}" for key, value in values.items()]
    demo = summary["demo_fast_profile"]
    if demo:
        lines.append(f"\n[demo, fast profile, run {demo['run_id']}] total {demo['total_s']} s, peak kernel memory {demo['peak_kernel_rss_mib']} MiB")
        lines += [f"  {name}: {seconds} s" for name, seconds in demo["notebooks_s"].items()]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0 if all(p["exit_status"] == 0 for p in processes) else 1


if __name__ == "__main__":
    sys.exit(main())
