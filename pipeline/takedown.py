"""``laionface takedown``: the command over ``stages.shard.takedown``, which removes listed
samples from a published run and from every cache of their bytes; this adds what the stage
does not own: the run-directory check, reading the list, and the audit report's thumbnails."""

from __future__ import annotations

from pathlib import Path

from manifests.layout import RunLayout
from pipeline.status import RunDirError
from pipeline.takedown_audit import purge_audit_report
from stages.shard.publish import published_path, read_published
from stages.shard.takedown import TakedownResult, take_down
from stages.shard.takedown_list import load_takedown
from stages.shard.takedown_purge import Places, place


def apply_takedown(run_dir: Path, list_file: Path) -> TakedownResult:
    """Remove every sample named in ``list_file`` from ``run_dir`` (``stages.shard.takedown``)
    and from the run's audit report."""
    layout = RunLayout(Path(run_dir))
    published = read_published(layout)
    if published is None:
        raise RunDirError(f"{run_dir}: nothing published yet ({published_path(layout)} missing)")
    # Read the list afresh: load_takedown caches per path for workers, a CLI call must not.
    entries = load_takedown.__wrapped__(Path(list_file))
    return take_down(layout, published, entries, Path(list_file), extra=(_audit_report,))


def _audit_report(layout: RunLayout, listed: frozenset[str]) -> Places:
    """The audit report, rewritten if it showed a thumbnail of a listed sample."""
    audit = place(layout, layout.audit_report)
    return {sid: {audit} for sid in purge_audit_report(layout, listed)}
