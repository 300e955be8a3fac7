"""Stage ``candidates``: LAION metadata in, one manifest per shard out, nothing downloaded.

Two steps. ``prepare`` (driver, on the cluster): count the input rows, fix the number of
shards, and normalize each input file in its own task into a part file whose rows carry their
shard. ``run_shard``: gather the shard's rows from every part, then judge them (URL validity,
URL safety, takedown list, exact-URL duplicates, metadata prefilters).

Rows are bucketed into shards by the hash of their normalized URL: deterministic, about
``shard_size`` rows per shard, and every copy of a URL lands in the same shard, so exact-URL
dedup is shard-local and shards are built in parallel.
"""

from __future__ import annotations

import glob as globlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator

from manifests import schema as S
from manifests.io import write_table_atomic
from manifests.report import ShardReport
from manifests.verdicts import Verdicts, combine, count
from stages.base import RunContext
from stages.candidate_rules import PrefilterConfig, first_failing_rule
from stages.laion_input import InputError, list_inputs, read_input
from stages.plan import ShardPlan, read_plan, write_plan
from stages.takedown_list import is_listed, load_takedown
from stages.urls import HostSafety, UrlProblem, derived_sample_id, normalize_url, url_hash

if TYPE_CHECKING:
    from distributed import Client

NAME = "candidates"


class CandidatesConfig(BaseModel):
    """Section ``candidates`` of the run config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: list[str] = Field(default_factory=list, description="parquet paths, globs or URLs")
    column_map: dict[str, str] = Field(
        default_factory=dict, description="our column -> input column, for non-LAION layouts"
    )
    keep_columns: list[str] = Field(default_factory=list, description="input columns to carry")
    shard_size: int = Field(10_000, ge=1, description="rows per shard (about: hash buckets)")
    prefilter: PrefilterConfig = Field(default_factory=PrefilterConfig)  # type: ignore[arg-type]
    takedown_list: Path | None = Field(None, description="URLs, sample_ids or URL hashes")
    allow_private_hosts: bool = Field(False, description="allow loopback/private hosts (tests)")
    resolve_hosts: bool = Field(True, description="refuse names resolving to private addresses")
    dns_timeout_s: float = Field(2.0, gt=0)

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

    @field_validator("takedown_list")
    @classmethod
    def _list_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"takedown list {value} does not exist")
        return value

    def build(self) -> CandidatesStage:
        return CandidatesStage(self)


class CandidatesStage:
    """See the module docstring."""

    name: ClassVar[str] = NAME
    upstream: ClassVar[str | None] = None
    columns: ClassVar[tuple[str, ...]] = S.CANDIDATES_COLUMNS
    barrier: ClassVar[bool] = True

    def __init__(self, config: CandidatesConfig) -> None:
        self.config = config

    @property
    def resources(self) -> dict[str, float]:
        return {}

    def prepare(self, ctx: RunContext, client: Client) -> None:
        """Plan the shards and normalize every input file into a part (one task per file)."""
        if not self.config.input:
            raise InputError("candidates.input is empty: list the LAION parquet files to read")
        files = list_inputs(self.config.input)
        n_rows = sum(f.n_rows for f in files)
        plan = ShardPlan(
            inputs=tuple((f.path, f.n_rows) for f in files),
            shard_size=self.config.shard_size,
            n_shards=max(1, math.ceil(n_rows / self.config.shard_size)),
        )
        _check_same_plan(ctx, plan)
        write_plan(ctx.layout, plan)
        parts = [self._part_path(ctx, i) for i in range(len(files))]
        todo = [(i, f.path) for i, f in enumerate(files) if not parts[i].is_file()]
        futures = client.map(
            _normalize_part,
            [path for _, path in todo],
            [parts[i] for i, _ in todo],
            n_shards=plan.n_shards,
            config=self.config,
            pure=False,
        )
        client.gather(futures)

    def reset(self, ctx: RunContext) -> None:
        return None  # the first stage: nothing upstream can make it stale

    def shards(self, ctx: RunContext) -> list[int]:
        return read_plan(ctx.layout).shard_ids

    def run_shard(self, shard: int, ctx: RunContext) -> ShardReport:
        plan = read_plan(ctx.layout)
        parts = [self._part_path(ctx, i) for i in range(len(plan.inputs))]
        table = _gather_shard(parts, shard)
        table, reasons = _judge(table, self.config)
        upstream = np.ones(table.num_rows, dtype=bool)
        verdicts = combine(upstream, [None] * table.num_rows, reasons)
        write_table_atomic(
            _manifest(table, verdicts, self.config), ctx.layout.manifest(NAME, shard)
        )
        return count(NAME, shard, upstream, verdicts)

    @staticmethod
    def _part_path(ctx: RunContext, index: int) -> Path:
        return ctx.layout.stage_global(NAME) / "parts" / f"{index:05d}.parquet"


def _check_same_plan(ctx: RunContext, plan: ShardPlan) -> None:
    try:
        old = read_plan(ctx.layout)
    except FileNotFoundError:
        return
    if old != plan:
        raise InputError(
            f"{ctx.run_dir} was planned with other inputs or shard_size: "
            "use a new run_dir (or delete the old one) to change them"
        )


_Located = tuple[str | None, str | None, str | None, str | None, int]


def _locate(raw: object, path: str, row: int, n_shards: int) -> _Located:
    """(url, host, url sha1, problem reason, shard) of one input row."""
    try:
        norm = normalize_url(raw)
    except UrlProblem as problem:
        shard = int(derived_sample_id(path, row), 16) % n_shards
        return None, None, None, S.reason(NAME, problem.why), shard
    digest = url_hash(norm.url)
    return norm.url, norm.host, digest, None, int(digest[:15], 16) % n_shards


def _normalize_part(path: str, out: Path, n_shards: int, config: CandidatesConfig) -> str:
    """Read one input file, normalize its URLs and tag every row with its shard."""
    table = read_input(path, config.column_map, config.keep_columns)
    located = [
        _locate(raw, path, row, n_shards)
        for row, raw in enumerate(table[S.URL_ORIGINAL].to_pylist())
    ]
    urls, hosts, hashes, problems, shards = (
        (list(c) for c in zip(*located, strict=True)) if located else ([], [], [], [], [])
    )
    extra = {
        S.URL: pa.array(urls, pa.string()),
        S.URL_HOST: pa.array(hosts, pa.string()),
        S.URL_SHA1: pa.array(hashes, pa.string()),
        S.REJECT_REASON: pa.array(problems, pa.string()),
        S.SHARD: pa.array(shards, pa.int32()),
        S.SOURCE_FILE: pa.array([path] * table.num_rows, pa.string()),
        S.SOURCE_ROW: pa.array(np.arange(table.num_rows), pa.int64()),
    }
    for name, array in extra.items():
        table = table.append_column(name, array)
    # Sorted by shard with small row groups, so each shard task reads only its own rows.
    table = table.sort_by([(S.SHARD, "ascending"), (S.SOURCE_ROW, "ascending")])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(table, tmp, row_group_size=2048, compression="zstd")
    tmp.replace(out)
    return str(out)


def _gather_shard(parts: list[Path], shard: int) -> pa.Table:
    """The shard's rows from every part, in input order (file, then row)."""
    tables = [pq.read_table(p, filters=[(S.SHARD, "=", shard)]) for p in parts]
    return pa.concat_tables(tables, promote_options="default")


def _judge(table: pa.Table, config: CandidatesConfig) -> tuple[pa.Table, list[str | None]]:
    """Assign sample_ids and the first reason each row fails, in rule order."""
    reasons: list[str | None] = table[S.REJECT_REASON].to_pylist()
    urls: list[str | None] = table[S.URL].to_pylist()
    hashes: list[str | None] = table[S.URL_SHA1].to_pylist()
    files = table[S.SOURCE_FILE].to_pylist()
    rows = table[S.SOURCE_ROW].to_pylist()
    _mark_unsafe(table, reasons, config)
    _mark_takedown(table, reasons, config)
    sample_ids, duplicate_of = _assign_ids(urls, hashes, files, rows, reasons)
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
    safety = HostSafety(config.resolve_hosts, config.dns_timeout_s)
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
