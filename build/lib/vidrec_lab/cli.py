"""The ``vidrec-lab`` command: run the notebooks headless, report on a run and copy its figure gallery."""

from __future__ import annotations

import argparse
import logging
import sys

from vidrec_lab.config import PROFILES
from vidrec_lab.constants import DEFAULT_SEED


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidrec-lab", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log DEBUG messages too")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="execute notebooks in order and write a run record under outputs/runs/")
    run.add_argument("notebooks", nargs="*", help="notebook stems or number prefixes (default: all), e.g. 00 05_recommendation")
    run.add_argument("--profile", choices=sorted(PROFILES), default="fast", help="smoke: synthetic data in minutes; fast: MovieLens-100k on a laptop CPU; full: GPU scale (default: fast)")
    run.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed passed to every notebook (default: {DEFAULT_SEED})")
    run.add_argument("--data", dest="data_path", default=None, help="data folder (default: VIDREC_LAB_DATA, then data/raw/, then download)")
    run.add_argument("--run-id", default=None, help="name of the run folder under outputs/runs (default: UTC time and profile)")
    run.add_argument("--resume", action="store_true", help="skip notebooks whose source, package code, data folder and parameters match the last successful run")

    report = commands.add_parser("report", help="write report.md and report.html for a run, or for two runs side by side")
    report.add_argument("run", help="run id under outputs/runs, or a run folder")
    report.add_argument("other", nargs="?", default=None, help="a second run to compare with")

    gallery = commands.add_parser("gallery", help="copy a run's headline figures, scaled down, into docs/gallery/ for the README")
    gallery.add_argument("run", help="run id under outputs/runs, or a run folder")
    gallery.add_argument("--dest", default=None, help="gallery folder (default: docs/gallery under the project home)")
    gallery.add_argument("--max-width", type=int, default=900, help="width limit in pixels (default: 900)")
    gallery.add_argument("--names", nargs="+", default=None, help="figure stems to copy (default: vidrec_lab.report.GALLERY_FIGURES)")

    commands.add_parser("list", help="list the notebooks in run order")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vidrec-lab`` console script; returns the exit status."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    from vidrec_lab import runner
    from vidrec_lab.tables import DataError

    try:
        return _dispatch(args, runner)
    except (FileNotFoundError, DataError, ValueError) as err:
        # A wrong notebook name, run id or data folder: the message names what was expected, so the
        # traceback is shown only with --verbose.
        logging.getLogger("vidrec_lab").error("%s%s", err, "" if args.verbose else " (add -v for the traceback)", exc_info=args.verbose)
        return 2


def _dispatch(args: argparse.Namespace, runner) -> int:
    """Run one subcommand and return its exit status."""
    if args.command == "report":
        from vidrec_lab.report import write_report

        for path in write_report(args.run, args.other):
            sys.stdout.write(f"{path}\n")
        return 0
    if args.command == "gallery":
        from vidrec_lab.config import project_home
        from vidrec_lab.report import GALLERY_FIGURES, build_gallery

        dest = args.dest if args.dest is not None else project_home() / "docs" / "gallery"
        for path in build_gallery(args.run, dest, args.names or GALLERY_FIGURES, max_width=args.max_width):
            sys.stdout.write(f"{path}\n")
        return 0
    if args.command == "list":
        for path in runner.list_notebooks():
            sys.stdout.write(f"{path.stem}\n")
        return 0
    try:
        runner.run_notebooks(
            args.notebooks or None,
            profile=args.profile,
            seed=args.seed,
            data_path=args.data_path,
            run_id=args.run_id,
            resume=args.resume,
        )
    except runner.NotebookFailed as err:
        logging.getLogger("vidrec_lab").error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
