"""Stage ``candidates``: LAION metadata in, one manifest per shard out, nothing downloaded.

Two steps. ``prepare`` (driver, on the cluster): count the input rows from the footers, read
the include lists (if any), fix the number of shards, and stream every input file into one
small parquet of rows per shard (``stages/candidates_ingest.py``: memory bounded by a batch
and a bucket, never by a file). ``run_shard``: read the shard's rows file, then judge the rows
(URL validity, URL safety, takedown list, exact-URL duplicates, metadata prefilters).

Rows are bucketed into shards by the hash of their normalized URL: deterministic, about
``shard_size`` rows per shard, and every copy of a URL lands in the same shard, so exact-URL
dedup is shard-local and shards are built in parallel. Rows an include list leaves out never
enter the run: they are counted (``excluded_by_include`` in ``ingest.json`` and in shard 0's
report counters, so the stage's merged report carries the run's total), not written.
"""

from __future__ import annotations

import glob as globlib
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator

from manifests import schema as S
from manifests.fingerprint import OPERATIONAL, digest, path_identity
from manifests.io import write_table_atomic
from manifests.report import ShardReport
from manifests.verdicts import Upstream, Verdicts
from stages.base import DeclaredColumns, RunContext
from stages.candidate_rules import PrefilterConfig, first_failing_rule
from stages.candidates_ingest import (
    IngestSpec,
    ReadTask,
    build_rows,
    plan_read_tasks,
    read_summary,
    remove_stale,
    rows_file,
    shards_per_bucket,
)
from stages.include_list import check_include_path, compile_include
from stages.laion_input import InputError, InputFile, input_identity, list_inputs
from stages.names import CANDIDATES
from stages.plan import ShardPlan, read_plan, write_plan
from stages.shard.takedown_list import (
    TAKEDOWN_REASON,
    is_listed,
    load_takedown,
    read_takedown_register,
)
from stages.urls import derived_sample_id, host_safety

if TYPE_CHECKING:
    from distributed import Client

NAME = CANDIDATES
# The report counter of input rows an include list left out (an input selection: they have
# no manifest rows, so they appear in no funnel count).
EXCLUDED_BY_INCLUDE = "excluded_by_include"
# Bumped when the rows files change form, so old intermediate files are not reused.
_INGEST_FORMAT = 1
_INCLUDE_DOC = (
    "include lists: only the rows they name enter the run (the others are counted, not "
    "written). .pth/.pt: torch-saved LAION-400M SAMPLE_IDs as LAION-Face's laion_face_ids.pth "
    "(a 1-D integer tensor, a list of ints, or one of those per part; read with "
    "weights_only, never unpickling objects); .parquet: one id column (SAMPLE_ID ints, or "
    "sample_id/url_sha1 hashes); .txt: one id per line. Integers match the input's SAMPLE_ID, "
    "16/40 hex digits the URL hash (sample_id), other text a string SAMPLE_ID"
)


class CandidatesConfig(BaseModel):
    """Section ``candidates`` of the run config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: list[str] = Field(default_factory=list, description="parquet paths, globs or URLs")
    column_map: dict[str, str] = Field(
        default_factory=dict, description="our column -> input column, for non-LAION layouts"
    )
    keep_columns: list[str] = Field(default_factory=list, description="input columns to carry")
    include: list[Path] = Field(default_factory=list, description=_INCLUDE_DOC)
    shard_size: int = Field(10_000, ge=1, description="rows per shard (about: hash buckets)")
    prefilter: PrefilterConfig = Field(default_factory=PrefilterConfig)  # type: ignore[arg-type]
    takedown_list: Path | None = Field(None, description="URLs, sample_ids or URL hashes")
    allow_private_hosts: bool = Field(False, description="allow loopback/private hosts (tests)")
    resolve_hosts: bool = Field(True, description="refuse names resolving to private addresses")
    dns_timeout_s: float = Field(2.0, gt=0)
    ingest_batch_rows: int = Field(
        32_768,
        ge=1,
        description="rows read and normalized at a time (bounds an ingest task's memory)",
        json_schema_extra=OPERATIONAL,
    )
    ingest_task_rows: int = Field(
        2_000_000,
        ge=1,
        description="input rows per ingest task: larger files are split by row groups",
        json_schema_extra=OPERATIONAL,
    )
    ingest_bucket_rows: int = Field(
        250_000,
        ge=1,
        description="rows per ingest bucket (bounds the memory of the per-shard split)",
        json_schema_extra=OPERATIONAL,
    )

    @field_validator("input")
    @classmethod
    def _inputs_exist(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if "://" in pattern:
                continue  # remote: checked when the stage lists it
            if not (
                globlib.glob(pattern) if globlib.has_magic(pattern) else Path(pattern).exists()
            ):
                raise ValueError(f"no file matches {pattern!r}")
        return value

    @field_validator("include")
    @classmethod
    def _include_readable(cls, value: list[Path]) -> list[Path]:
        return [check_include_path(p) for p in value]

    @field_validator("takedown_list")
    @classmethod
    def _list_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"takedown list {value} does not exist")
        return value

    def build(self) -> CandidatesStage:
        return CandidatesStage(self)


class CandidatesStage(DeclaredColumns):
    """See the module docstring."""

    name: ClassVar[str] = NAME
    reads: ClassVar[tuple[str, ...]] = ()  # the first stage: its input is the LAION metadata
    upstream: ClassVar[str | None] = None
    columns: ClassVar[tuple[str, ...]] = S.CANDIDATES_COLUMNS
    barrier: ClassVar[bool] = True

    def __init__(self, config: CandidatesConfig) -> None:
        self.config = config

    @property
    def resources(self) -> dict[str, float]:
        return {}

    def prepare(self, ctx: RunContext, client: Client) -> None:
        """Plan the shards and stream every input into per-shard rows files (Dask tasks)."""
        if not self.config.input:
            raise InputError("candidates.input is empty: list the LAION parquet files to read")
        files = list_inputs(self.config.input)
        include_dir, n_listed = self._compile_include(ctx, client)
        n_rows = sum(f.n_rows for f in files)
        entering = n_rows if include_dir is None else min(n_rows, n_listed)
        plan = ShardPlan(
            inputs=tuple((f.path, f.n_rows) for f in files),
            shard_size=self.config.shard_size,
            n_shards=max(1, math.ceil(entering / self.config.shard_size)),
        )
        tasks = plan_read_tasks(files, self.config.ingest_task_rows)
        spec = self._ingest_spec(ctx, files, tasks, plan.n_shards, entering, include_dir)
        plan = replace(plan, ingest=spec.key)
        _check_same_plan(ctx, plan)
        write_plan(ctx.layout, plan)
        global_dir = ctx.layout.stage_global(NAME)
        keep = {spec.root.name, Path(include_dir).name if include_dir else ""}
        # "parts": the whole-file part files written before ingest streamed.
        remove_stale(global_dir, ("ingest-", "include-", "parts"), keep)
        build_rows(client, spec, tasks, global_dir / "ingest.json")

    def reset(self, ctx: RunContext) -> None:
        return None  # the first stage: nothing upstream can make it stale

    def input_identity(self) -> object:
        """The input files with their sizes and modification stamps (``InputReader``): a file
        replaced under the same name makes every shard stale, as a changed path does."""
        return input_identity(self.config.input) if self.config.input else []

    def shards(self, ctx: RunContext) -> list[int]:
        return read_plan(ctx.layout).shard_ids

    def run_shard(self, shard: int, ctx: RunContext) -> ShardReport:
        plan = read_plan(ctx.layout)
        t0 = time.perf_counter()
        root = ctx.layout.stage_global(NAME) / f"ingest-{plan.ingest}"
        table = pq.read_table(rows_file(root, shard))
        t1 = time.perf_counter()
        table, reasons = _judge(table, self.config, read_takedown_register(ctx.layout))
        entering = Upstream.entering(table)
        verdicts = entering.combine(reasons)
        write_table_atomic(
            _manifest(table, verdicts, self.config), ctx.layout.manifest(NAME, shard)
        )
        seconds = {"gather": t1 - t0, "judge": time.perf_counter() - t1}
        return entering.count(NAME, shard, verdicts, seconds, self._counters(ctx, shard))

    def _counters(self, ctx: RunContext, shard: int) -> dict[str, float]:
        """The run's excluded_by_include, on shard 0 only: reports merge by addition."""
        if not self.config.include or shard != 0:
            return {}
        summary = read_summary(ctx.layout.stage_global(NAME) / "ingest.json")
        return {EXCLUDED_BY_INCLUDE: summary.excluded_by_include if summary else 0}

    def _compile_include(self, ctx: RunContext, client: Client) -> tuple[str | None, int]:
        """The compiled include directory and its number of ids (one Dask task, once)."""
        if not self.config.include:
            return None, 0
        paths = [str(p) for p in self.config.include]
        identity = [(p, path_identity(Path(p))) for p in paths]
        out = ctx.layout.stage_global(NAME) / f"include-{digest(identity)}"
        future = client.submit(compile_include, paths, str(out), pure=False)
        return str(out), int(future.result())

    def _ingest_spec(
        self,
        ctx: RunContext,
        files: list[InputFile],
        tasks: list[ReadTask],
        n_shards: int,
        entering: int,
        include_dir: str | None,
    ) -> IngestSpec:
        cfg = self.config
        material = {
            "format": _INGEST_FORMAT,
            "inputs": [(f.path, f.n_rows, list(f.row_groups), list(f.identity)) for f in files],
            "column_map": cfg.column_map,
            "keep_columns": cfg.keep_columns,
            "include": Path(include_dir).name if include_dir else None,
            "n_shards": n_shards,
        }
        per_bucket = shards_per_bucket(n_shards, entering, cfg.ingest_bucket_rows)
        layout = digest({"tasks": [(t.path, t.row_groups) for t in tasks], "per": per_bucket})
        return IngestSpec(
            root=ctx.layout.stage_global(NAME) / f"ingest-{digest(material)}",
            layout=layout,
            n_shards=n_shards,
            shards_per_bucket=per_bucket,
            column_map=dict(cfg.column_map),
            keep_columns=tuple(cfg.keep_columns),
            include_dir=include_dir,
            batch_rows=cfg.ingest_batch_rows,
        )


def _check_same_plan(ctx: RunContext, plan: ShardPlan) -> None:
    """Inputs, shard_size and n_shards fix what a shard is: they may not change in a run dir.
    What only changes the rows (column_map, keep_columns, include lists with the same number
    of shards) gets a new ingest key instead."""
    try:
        old = read_plan(ctx.layout)
    except FileNotFoundError:
        return
    if replace(old, ingest=plan.ingest) != plan:
        raise InputError(
            f"{ctx.run_dir} was planned with other inputs, shard_size or include lists: "
            "use a new run_dir (or delete the old one) to change them"
        )


def _judge(
    table: pa.Table, config: CandidatesConfig, registered: frozenset[str]
) -> tuple[pa.Table, list[str | None]]:
    """Assign sample_ids and the first reason each row fails, in rule order (``registered``:
    the run's takedown register)."""
    reasons: list[str | None] = table[S.REJECT_REASON].to_pylist()
    urls: list[str | None] = table[S.URL].to_pylist()
    hashes: list[str | None] = table[S.URL_SHA1].to_pylist()
    files = table[S.SOURCE_FILE].to_pylist()
    rows = table[S.SOURCE_ROW].to_pylist()
    _mark_unsafe(table, reasons, config)
    _mark_takedown(table, reasons, config)
    sample_ids, duplicate_of = _assign_ids(urls, hashes, files, rows, reasons)
    _mark_registered(sample_ids, reasons, registered)
    rule_failures = first_failing_rule(table, config.prefilter)
    for i, why in enumerate(rule_failures):
        if reasons[i] is None and why is not None:
            reasons[i] = S.reason(NAME, why)
    table = table.append_column(S.SAMPLE_ID, pa.array(sample_ids, pa.string()))
    table = table.append_column(S.DUPLICATE_OF, pa.array(duplicate_of, pa.string()))
    return table, reasons


def _mark_unsafe(table: pa.Table, reasons: list[str | None], config: CandidatesConfig) -> None:
    if config.allow_private_hosts:
        return
    hosts = table[S.URL_HOST].to_pylist()
    safety = host_safety(config.resolve_hosts, config.dns_timeout_s)
    verdict = safety.check_many({h for h, r in zip(hosts, reasons, strict=True) if r is None and h})
    for i, host in enumerate(hosts):
        if reasons[i] is None and host and not verdict[host]:
            reasons[i] = S.reason(NAME, "unsafe_url")


def _mark_takedown(table: pa.Table, reasons: list[str | None], config: CandidatesConfig) -> None:
    if config.takedown_list is None:
        return
    entries = load_takedown(config.takedown_list)
    urls = table[S.URL].to_pylist()
    originals = table[S.URL_ORIGINAL].to_pylist()
    hashes = table[S.URL_SHA1].to_pylist()
    for i, url in enumerate(urls):
        if reasons[i] is None and url and is_listed(entries, hashes[i][:16], url, originals[i]):
            reasons[i] = S.reason(NAME, "takedown")


def _mark_registered(
    sample_ids: list[str], reasons: list[str | None], registered: frozenset[str]
) -> None:
    """Samples ``laionface takedown`` removed stay out of every rerun, whatever the config's
    list says now, with the reason the takedown gave them: a recompute equals its result."""
    for i, sample_id in enumerate(sample_ids):
        if reasons[i] is None and sample_id in registered:
            reasons[i] = TAKEDOWN_REASON


def _assign_ids(
    urls: list[str | None],
    hashes: list[str | None],
    files: list[str],
    rows: list[int],
    reasons: list[str | None],
) -> tuple[list[str], list[str | None]]:
    """The first copy of a URL owns its sample_id; later copies get a derived id and a reason."""
    first: dict[str, str] = {}
    sample_ids: list[str] = []
    duplicate_of: list[str | None] = []
    for i, url in enumerate(urls):
        digest = hashes[i]
        if url is None or digest is None:
            sample_ids.append(derived_sample_id("no-url", files[i], rows[i]))
            duplicate_of.append(None)
            continue
        own = digest[:16]
        if url not in first:
            first[url] = own
            sample_ids.append(own)
            duplicate_of.append(None)
            continue
        sample_ids.append(derived_sample_id("duplicate", url, files[i], rows[i]))
        duplicate_of.append(first[url])
        if reasons[i] is None:
            reasons[i] = S.reason(NAME, "duplicate_url")
    return sample_ids, duplicate_of


def _manifest(table: pa.Table, verdicts: Verdicts, config: CandidatesConfig) -> pa.Table:
    columns = {**{c: table[c] for c in S.CANDIDATES_COLUMNS if c in table.column_names}}
    columns.update(verdicts.columns())
    ordered = {c: columns[c] for c in S.CANDIDATES_COLUMNS}
    for extra in config.keep_columns:
        ordered[extra] = table[extra]
    schema = S.schema_for(
        S.CANDIDATES_COLUMNS, pa.schema([table.schema.field(c) for c in config.keep_columns])
    )
    return pa.table(ordered).cast(schema)
