"""``laionface``: a thin CLI; each subcommand parses, loads the config, calls one library function.

``main(argv) -> int`` so tests call it directly. Expected problems (a bad config, a missing
path, a failed shard) print one line on stderr and exit non-zero; the CLI is the only place
that prints.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# img2dataset imports albumentations, which otherwise calls out to check for updates.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# Dask's own INFO chatter (workers starting, clients closing) would bury the progress bars.
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")

from manifests.report import ShardReport
from pipeline.config import ConfigError, load_config
from pipeline.status import RunDirError, StageStatus, inspect_sample, run_status

Handler = Callable[[argparse.Namespace], int]
# Errors that mean "fix your input", reported in one line without a traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    RunDirError,
    FileNotFoundError,
    ValueError,
)


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="run config YAML")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value (repeatable)",
    )


def cmd_validate(args: argparse.Namespace) -> int:
    from pipeline.runner import check_stages

    config = load_config(args.config, args.overrides)
    check_stages(config)
    print(f"{args.config}: ok (stages: {', '.join(config.stages)}; run_dir: {config.run_dir})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.runner import plan_pipeline, run_pipeline

    config = load_config(args.config, args.overrides)
    if args.dry_run:
        for line in plan_pipeline(config, args.stages):
            print(line)
        return 0
    result = run_pipeline(config, args.stages)
    _print_funnel(list(result.reports.values()))
    for stage, shards in result.skipped.items():
        print(f"{stage}: {len(shards)} shard(s) skipped, see {config.run_dir / 'report.json'}")
    return 0 if result.ok else 3


def cmd_status(args: argparse.Namespace) -> int:
    for status in run_status(args.run_dir):
        print(_status_line(status))
        for why, n in status.top_reasons():
            print(f"    {n:>8}  {why}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    if args.sample_id is None:
        print((args.run_dir / "run.json").read_text(encoding="utf-8"))
        return 0
    history = inspect_sample(args.run_dir, args.sample_id)
    print(json.dumps(history, indent=2, default=str))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo

    demo = run_demo(args.out, args.overrides)
    print(f"input:   {demo.input_file}")
    print(f"run dir: {demo.run_dir}")
    if demo.shards_dir.is_dir():
        print(f"shards:  {demo.shards_dir}")
    _print_funnel(list(demo.result.reports.values()))
    if demo.report is not None:
        print(f"report:  {demo.report}")
    return 0 if demo.result.ok else 3


def cmd_refilter(args: argparse.Namespace) -> int:
    from pipeline.refilter import refilter

    result = refilter(args.run_dir, args.overrides, args.name)
    print(f"decision set {result.name}: {result.path}")
    print(f"{result.rows} rows re-decided in {result.seconds:.2f} s")
    print(f"  {'reason':<28} {'before':>8} {'after':>8}")
    for why in sorted(set(result.before) | set(result.after)):
        print(f"  {why:<28} {result.before[why]:>8} {result.after[why]:>8}")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from pipeline.retry import retry_failed

    reasons = [r for r in args.reasons.split(",") if r.strip()]
    result = retry_failed(args.run_dir, reasons, args.config, args.overrides, args.dry_run)
    n = sum(t.retried for t in result.reasons.values())
    verb = "would retry" if result.dry_run else "retried"
    print(f"retry: {verb} {n} sample(s) in {len(result.retried)} download shard(s)")
    if n:
        print(f"  {'reason':<28} {'retried':>8} {'recovered':>9}  still failing")
    for why, tally in result.reasons.items():
        failing = ", ".join(f"{r} {c}" for r, c in tally.still_failing.items()) or "-"
        print(f"  {why:<28} {tally.retried:>8} {tally.recovered:>9}  {failing}")
    for stage, actions in result.actions.items():
        print(f"  recomputed {stage}: shards {actions['run'] or '-'}")
    return 0 if result.ok else 3


def _status_line(s: StageStatus) -> str:
    r = s.report
    planned = "?" if s.samples_planned is None else s.samples_planned
    return (
        f"{s.stage:<11} shards {s.done}/{s.planned} done, {s.failed} failed, {s.missing} missing"
        f" | samples {s.samples_done}/{planned}"
        f" | rows in {r.n_in}, kept {r.n_out}, dropped {r.n_dropped}"
    )


def _print_funnel(reports: Sequence[ShardReport]) -> None:
    print("funnel:")
    for r in reports:
        print(f"  {r.stage:<11} in {r.n_in:>8}  kept {r.n_out:>8}  dropped {r.n_dropped:>8}")
        for why, n in sorted(r.dropped.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"      {n:>8}  {why}")


def _add_retry_command(sub: Any) -> None:
    p = sub.add_parser("retry", help="fetch samples that failed with given reasons again")
    p.add_argument("run_dir", type=Path)
    p.add_argument(
        "--reasons",
        required=True,
        metavar="R1,R2",
        help="download reasons or classes, e.g. download:timeout,download:http_5xx",
    )
    p.add_argument("--config", type=Path, default=None, help="run config (default: run.json's)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a download, cluster or runner setting (repeatable)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="list what would be fetched; fetch nothing"
    )
    p.set_defaults(func=cmd_retry)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="laionface", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="check a run config")
    _add_config_args(p)
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("run", help="run the pipeline")
    _add_config_args(p)
    p.add_argument("--stages", nargs="+", default=None, help="only these stages")
    p.add_argument(
        "--dry-run", action="store_true", help="print per stage what would run and why; run nothing"
    )
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("status", help="per stage: shards done/missing/failed, top reasons")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("inspect", help="one sample's history across stages")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--sample-id", default=None)
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("refilter", help="re-decide the filter stage from stored scores")
    p.add_argument("run_dir", type=Path)
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        required=True,
        metavar="filter.NAME.KEY=VALUE",
    )
    p.add_argument("--name", default=None, help="decision set name (default: from the overrides)")
    p.set_defaults(func=cmd_refilter)
    _add_retry_command(sub)
    p = sub.add_parser("demo", help="end-to-end demo on embedded photos, offline")
    p.add_argument("--out", type=Path, default=Path("demo-run"))
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.set_defaults(func=cmd_demo)
    from pipeline.publish_cli import add_commands as add_publish_commands
    from proxt2i.cli import add_commands as add_proxt2i_commands

    add_publish_commands(sub)
    add_proxt2i_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    handler: Handler = args.func
    try:
        return handler(args)
    except EXPECTED_ERRORS as err:
        if args.verbose:
            raise
        print(f"laionface {args.command}: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # ShardFailed and img2dataset failures: one line, no traceback
        if args.verbose:
            raise
        print(f"laionface {args.command}: {err}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
