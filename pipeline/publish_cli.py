"""CLI subcommands of the published corpus: ``report`` and ``takedown``.

``add_commands(subparsers)`` adds them to ``laionface``'s parser; each handler calls one
library function and prints a short summary (the CLI is the only layer that prints).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline.report_html import write_report

    files = write_report(args.run_dir, args.out)
    print(f"report: {files.html}")
    print(f"numbers: {files.json}")
    return 0


def cmd_takedown(args: argparse.Namespace) -> int:
    from pipeline.takedown import apply_takedown

    result = apply_takedown(args.run_dir, args.list)
    print(
        f"takedown: {len(result.listed)} listed sample(s) in this run, "
        f"{len(result.removed)} removed from the published shards"
    )
    print(f"  rebuilt: {', '.join(result.rebuilt) or '-'}")
    print(f"  deleted (emptied): {', '.join(result.deleted) or '-'}")
    print(f"  untouched: {result.untouched} tar(s)")
    for sample_id, places in result.places.items():
        print(f"  {sample_id}: removed from {', '.join(places) or 'nothing (held nowhere)'}")
    if result.scratch:
        print(f"  scratch discarded: {', '.join(result.scratch)}")
    print(f"  record: {result.record}")
    return 0


def add_commands(subparsers: Any) -> None:
    """Add ``report`` and ``takedown`` to the ``laionface`` subparsers."""
    p = subparsers.add_parser("report", help="self-contained HTML audit report of a run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, default=None, help="HTML file (default RUN/audit.html)")
    p.set_defaults(func=cmd_report)
    p = subparsers.add_parser(
        "takedown", help="remove listed samples from the published shards and every cache"
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument(
        "--list", type=Path, required=True, help="file of URLs, sample_ids or URL hashes"
    )
    p.set_defaults(func=cmd_takedown)
