"""``RUN/run.json``: one record per invocation, never overwritten, read through ``RunHistory``.

Each record holds the resolved config, the schema and package versions, the git revision, the
fingerprint digests of every stage's config as that invocation saw them, and the outcome
(``running`` until the invocation ends, then ``ok``, ``incomplete`` or ``failed``). Done
markers name the ``run_id`` of the invocation that wrote them, so the card and the report can
describe the config that produced the data, not merely the last one tried.

A run directory written before records were kept (a single top-level ``config``) reads as a
history of one record with ``run_id`` ``"legacy"``. Every record is validated on read: a
malformed ``run.json`` is a ``RunRecordError`` whose one line names the file and the field.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from manifests.fingerprint import digest
from manifests.io import read_marker, write_text_atomic
from manifests.layout import RunLayout

FORMAT = "laionface-run-history/1"


class RunRecordError(ValueError):
    """``run.json`` is not a run history this version can read; one line naming the file."""


@dataclass(frozen=True)
class RunRecord:
    """One invocation of ``laionface run`` (or of the library's ``run_pipeline``)."""

    run_id: str
    started_at: str
    config: dict[str, Any]
    schema_version: int | None = None
    packages: dict[str, str | None] = field(default_factory=dict)
    git_revision: str | None = None
    stages: tuple[str, ...] = ()
    fingerprints: dict[str, str] = field(default_factory=dict)
    outcome: str = "running"
    finished_at: str | None = None

    @property
    def config_fingerprint(self) -> str:
        """One digest of every stage's fingerprint: equal configs give equal digests."""
        return digest(sorted(self.fingerprints.items()))

    def section(self, stage: str) -> dict[str, Any]:
        """The record's config section of ``stage`` (empty when absent)."""
        value = self.config.get(stage, {})
        return value if isinstance(value, dict) else {}


# run.json is read back from disk, a boundary like the config file: its records are checked
# against RunRecord's field types (keys this version does not know are ignored).
_RECORD = TypeAdapter(RunRecord)


@dataclass(frozen=True)
class RunHistory:
    """Every record of a run directory, oldest first."""

    records: tuple[RunRecord, ...]

    @property
    def latest(self) -> RunRecord | None:
        return self.records[-1] if self.records else None

    def find(self, run_id: str | None) -> RunRecord | None:
        return next((r for r in self.records if r.run_id == run_id), None)

    @property
    def config(self) -> dict[str, Any]:
        """The latest record's config (empty without records)."""
        return self.latest.config if self.latest is not None else {}


def producing_record(layout: RunLayout, stage: str) -> RunRecord | None:
    """The record of the invocation that wrote ``stage``'s markers (a barrier stage's shards
    are all written by one); the latest record while the stage has no markers yet."""
    history = read_run_history(layout)
    done = layout.done_shards(stage)
    marker = read_marker(layout, stage, done[0]) if done else None
    found = history.find(marker.run_id) if marker is not None else None
    return found if found is not None else history.latest


def read_run_history(layout: RunLayout) -> RunHistory:
    """The run's records; an empty history when ``run.json`` does not exist."""
    path = layout.run_json
    if not path.is_file():
        return RunHistory(())
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError alike
        raise RunRecordError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise RunRecordError(f"{path}: the top level must be an object, not {type(data).__name__}")
    if data.get("format") != FORMAT:  # a run.json from before records were kept
        legacy = {**data, "run_id": "legacy", "started_at": data.get("written_at", ""),
                  "outcome": "unknown"}  # fmt: skip
        return RunHistory((_record(path, 0, legacy),))
    records = data.get("records")
    if not isinstance(records, list):
        raise RunRecordError(f"{path}: 'records' must be a list of run records")
    return RunHistory(tuple(_record(path, i, r) for i, r in enumerate(records)))


def _record(path: Path, index: int, raw: object) -> RunRecord:
    """One validated record; the first problem found as a one-line RunRecordError."""
    try:
        return _RECORD.validate_python(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) + ": " if first["loc"] else ""
        raise RunRecordError(f"{path}: record {index}: {where}{first['msg']}") from None


def _write(layout: RunLayout, history: RunHistory) -> None:
    body = {"format": FORMAT, "records": [asdict(r) for r in history.records]}
    write_text_atomic(json.dumps(body, indent=2, sort_keys=True), layout.run_json)


def append_record(layout: RunLayout, record: RunRecord) -> None:
    """Add ``record`` to the history (the driver is the only writer of a run's run.json)."""
    history = read_run_history(layout)
    _write(layout, RunHistory((*history.records, record)))


def finish_record(layout: RunLayout, run_id: str, outcome: str, finished_at: str) -> None:
    """Set the outcome of the record ``run_id``; the other records are left as they are."""
    history = read_run_history(layout)
    records = tuple(
        replace(r, outcome=outcome, finished_at=finished_at) if r.run_id == run_id else r
        for r in history.records
    )
    _write(layout, RunHistory(records))
