"""Stage ``download``: img2dataset fetches each shard's kept candidates, once per shard.

img2dataset installs a SIGINT handler, which only works in a main thread; inside a Dask worker
``img2dataset.download()`` raises ``ValueError: signal only works in main thread``. So each shard
runs img2dataset's ``Downloader`` in a subprocess (``stages.img2dataset_shard``, one per worker
thread, serving shard after shard), whose output (tar + parquet of per-sample status) is then
folded into our manifest keyed by sample_id. Its console output goes to the shard log.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator

from manifests import schema as S
from manifests.fingerprint import OPERATIONAL
from manifests.io import write_table_atomic
from manifests.report import ShardReport
from manifests.verdicts import read_upstream
from stages.address_policy import DEFAULT_MAX_REDIRECTS, MAX_REDIRECTS_CAP, parse_peer
from stages.base import RunContext
from stages.candidates import NAME as CANDIDATES
from stages.download_errors import NOT_ATTEMPTED, classify
from stages.img2dataset_shard import ShardProcess, ShardProcessDied
from stages.names import DOWNLOAD
from stages.shardwise import ShardwiseStage

NAME = DOWNLOAD

# img2dataset's own output column names (its writer's schema), read only here.
_I2D_URL, _I2D_CAPTION = "url", "caption"
_I2D_COLUMNS = {
    "key": S.DL_KEY,
    "status": S.DL_STATUS,
    "error_message": S.DL_ERROR,
    "sha256": S.DL_SHA256,
    "width": S.DL_WIDTH_PX,
    "height": S.DL_HEIGHT_PX,
    "original_width": S.DL_ORIGINAL_WIDTH_PX,
    "original_height": S.DL_ORIGINAL_HEIGHT_PX,
}


class PolitenessConfig(BaseModel):
    """Section ``download.politeness``: per-host limits in each shard's download subprocess
    (``stages.host_politeness``). Every limit is per shard: N shards downloading at once may
    reach one host N times over. Caps and the interval change speed only (operational); the
    back-off bounds and the breakers change which samples download (produce)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_per_host: int = Field(
        4,
        ge=1,
        json_schema_extra=OPERATIONAL,
        description="requests in flight to one host at a time. RFC 9112 §9.4 asks clients to "
        "limit their connections to a server; browsers open 6 per host (Chromium, Firefox), so "
        "4 is less than one browser tab, while img2dataset alone sends thread_count at once "
        "(img2dataset #62: 429s from a one-domain dataset; #375: a LAION download flagged as "
        "a DoS)",
    )
    min_interval_s: float = Field(
        0.0,
        ge=0.0,
        json_schema_extra=OPERATIONAL,
        description="seconds between two request starts to one host. 0: the cap already "
        "bounds the load (Scrapy's DOWNLOAD_DELAY also defaults to 0), and LAION's URLs sit "
        "mostly on large image CDNs that an interval would throttle; set e.g. 1.0 for a crawl "
        "of a few small hosts",
    )
    max_retry_after_s: float = Field(
        60.0,
        ge=0.0,
        description="the longest wait a 429/503 may impose (Retry-After, or the back-off); "
        "longer: the sample ends as download:rate_limited and the host is left alone for "
        "that time. A waiting request holds a download thread: 60 s is 6 default timeouts",
    )
    backoff_retries: int = Field(
        2,
        ge=0,
        description="retries of one URL answered 429 or 503 (img2dataset retries at once, if "
        "at all: #62, #331); after them the answer stands (download:http_429/http_503)",
    )
    backoff_s: float = Field(
        1.0,
        gt=0.0,
        description="the wait after a 429/503 without Retry-After, doubled per retry "
        "(exponential back-off, img2dataset #331: CloudFront's 429s name no wait): 1 s, 2 s",
    )
    breaker_optouts: int = Field(
        3,
        ge=0,
        description="X-Robots-Tag opt-outs after which a host's remaining URLs in the shard "
        "end as download:host_skipped, uncontacted (img2dataset #298: opting out still costs "
        "the host every download). 3: one opt-out is a page's choice, three a site's policy "
        "(the header is per URL, as #298's maintainer notes); 0: off",
    )
    breaker_failures: int = Field(
        10,
        ge=0,
        description="consecutive failures (connection errors, timeouts, 5xx) after which a "
        "host's remaining URLs end as download:host_skipped. Consecutive: one answer resets "
        "it, so only a host that is down trips it, after about 10 x timeout_s of thread "
        "time; 0: off",
    )


class DownloadConfig(BaseModel):
    """Section ``download``: img2dataset's settings (names follow its CLI)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(1024, ge=16, description="target size; LAION-Face keeps >=512 px")
    resize_mode: Literal["no", "border", "keep_ratio", "keep_ratio_largest", "center_crop"] = (
        "keep_ratio"
    )
    resize_only_if_bigger: bool = Field(True, description="never upscale small photos")
    encode_format: Literal["jpg", "png", "webp"] = "jpg"
    encode_quality: int = Field(95, ge=1, le=100)
    timeout_s: int = Field(10, ge=1, description="per request")
    retries: int = Field(0, ge=0, description="per URL")
    thread_count: int = Field(
        64, ge=1, json_schema_extra=OPERATIONAL, description="download threads per shard"
    )
    user_agent_token: str | None = Field(None, description="identifies the crawler to hosts")
    disallowed_header_directives: list[str] = Field(
        default_factory=lambda: ["noai", "noimageai", "noindex", "noimageindex"],
        description="X-Robots-Tag directives that forbid use; [] to ignore the header",
    )
    min_image_size: int = Field(0, ge=0, description="img2dataset min shorter side")
    max_aspect_ratio: float | None = Field(None, ge=1.0)
    # The connect-time address policy (stages.address_policy). Produce fields (the default
    # role): they decide which samples download at all.
    allow_addresses: list[str] = Field(
        default_factory=list,
        description="IP:port peers the download may contact although not public, e.g. "
        "['127.0.0.1:8765'] for a loopback test server or a local mirror ([::1]:8765 for IPv6)",
    )
    resolve_overrides: dict[str, str] = Field(
        default_factory=dict,
        description="hostname -> IP address used instead of DNS, for tests and air-gapped "
        "mirrors; the address is still checked against the policy",
    )
    max_redirects: int = Field(
        DEFAULT_MAX_REDIRECTS, ge=0, le=MAX_REDIRECTS_CAP, description="redirect hops per URL"
    )
    politeness: PolitenessConfig = Field(default_factory=PolitenessConfig)  # type: ignore[arg-type]

    @field_validator("allow_addresses")
    @classmethod
    def _peers_parse(cls, value: list[str]) -> list[str]:
        for peer in value:
            parse_peer(peer)  # its ValueError names the entry
        return value

    @field_validator("resolve_overrides")
    @classmethod
    def _overrides_are_addresses(cls, value: dict[str, str]) -> dict[str, str]:
        for host, address in value.items():
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"{host}: {address!r} is not an IP address") from None
        return value

    def build(self) -> DownloadStage:
        return DownloadStage(self)

    def settings(self) -> dict[str, dict[str, Any]]:
        """Arguments of img2dataset's ``Resizer`` and ``Downloader``, the address policy
        (``AddressPolicy.from_settings``) and the per-host limits (``Politeness``), as JSON
        for the subprocess (see img2dataset_shard)."""
        resizer = {
            "image_size": self.image_size,
            "resize_mode": self.resize_mode,
            "resize_only_if_bigger": self.resize_only_if_bigger,
            "encode_format": self.encode_format,
            "encode_quality": self.encode_quality,
            "min_image_size": self.min_image_size,
            "max_aspect_ratio": self.max_aspect_ratio or float("inf"),
        }
        downloader = {
            "thread_count": self.thread_count,
            "timeout": self.timeout_s,
            "retries": self.retries,
            "encode_format": self.encode_format,
            "user_agent_token": self.user_agent_token,
            # img2dataset treats an empty list as "ignore the header" only as None.
            "disallowed_header_directives": self.disallowed_header_directives or None,
        }
        address_policy = {
            "allow_addresses": list(self.allow_addresses),
            "resolve_overrides": dict(self.resolve_overrides),
            "max_redirects": self.max_redirects,
        }
        return {
            "resizer": resizer,
            "downloader": downloader,
            "address_policy": address_policy,
            "politeness": self.politeness.model_dump(),
        }


class DownloadStage(ShardwiseStage):
    """See the module docstring."""

    name: ClassVar[str] = NAME
    reads: ClassVar[tuple[str, ...]] = (CANDIDATES,)
    upstream: ClassVar[str | None] = CANDIDATES
    columns: ClassVar[tuple[str, ...]] = S.DOWNLOAD_COLUMNS

    def __init__(self, config: DownloadConfig) -> None:
        self.config = config

    def run_shard(self, shard: int, ctx: RunContext) -> ShardReport:
        layout = ctx.layout
        upstream = read_upstream(layout, self.reads, shard, [S.SAMPLE_ID, S.URL, S.ALT_TEXT])
        tmp = layout.shard_tmp(NAME, shard)
        t0 = time.perf_counter()
        kept = upstream.rows.filter(pa.array(upstream.keep))
        results = self._fetch(kept, tmp, layout.shard_log(NAME, shard))
        seconds = time.perf_counter() - t0
        table = _manifest_columns(upstream.rows, results)
        verdicts = upstream.combine(_reasons(table))
        for name, array in verdicts.columns().items():
            table = table.append_column(name, array)
        write_table_atomic(
            table.cast(S.schema_for(S.DOWNLOAD_COLUMNS)), layout.manifest(NAME, shard)
        )
        tar = tmp / "out" / "00000.tar"
        if tar.is_file():
            os.replace(tar, layout.shard_file(NAME, shard, ".tar"))
        n_ok = int(sum(1 for s in table[S.DL_STATUS].to_pylist() if s == "success"))
        return upstream.count(
            NAME,
            shard,
            verdicts,
            seconds={"download": seconds},
            counters={"images_per_s": n_ok / seconds if seconds > 0 else 0.0},
        )

    def _fetch(self, kept: pa.Table, tmp: Path, log_path: Path) -> pa.Table | None:
        """Run img2dataset on the kept rows; its per-sample parquet, or None if nothing to do."""
        if kept.num_rows == 0:
            return None
        tmp.mkdir(parents=True, exist_ok=True)
        url_list = tmp / "urls.parquet"
        pq.write_table(
            pa.table(
                {
                    S.SAMPLE_ID: kept[S.SAMPLE_ID],
                    _I2D_CAPTION: kept[S.ALT_TEXT],
                    _I2D_URL: kept[S.URL],
                }
            ),
            url_list,
        )
        out = tmp / "out"
        run_img2dataset(self.config.settings(), url_list, out, log_path)
        result = out / "00000.parquet"
        if not result.is_file():
            raise RuntimeError(f"img2dataset wrote no {result}; see {log_path}")
        return pq.read_table(result)


# A shard process serves this many shards, then a fresh one starts: whatever a long run's
# img2dataset or decoders leak stays bounded, for ~8 s of imports per this many shards.
JOBS_PER_PROCESS = 100
_processes = threading.local()  # one shard process per worker thread: a shard at a time each


def run_img2dataset(
    settings: dict[str, dict[str, Any]], url_list: Path, out: Path, log_path: Path
) -> None:
    """img2dataset on one shard in this thread's shard process (``stages.img2dataset_shard``);
    its output goes to ``log_path``, never ours."""
    proc: ShardProcess | None = getattr(_processes, "proc", None)
    if proc is not None and (proc.jobs >= JOBS_PER_PROCESS or not proc.matches()):
        proc.close()
        proc = None
    if proc is None:
        proc = _processes.proc = ShardProcess()
    try:
        proc.run(settings, url_list, out, log_path)
    except ShardProcessDied:
        _processes.proc = None
        raise


def _manifest_columns(cand: pa.Table, results: pa.Table | None) -> pa.Table:
    """One row per candidate, in candidate order, with img2dataset's results where it ran."""
    found: dict[str, dict[str, object]] = {}
    if results is not None:
        present = [c for c in _I2D_COLUMNS if c in results.column_names]
        for row in results.select([S.SAMPLE_ID, *present]).to_pylist():
            found[row[S.SAMPLE_ID]] = row
    columns: dict[str, list[object]] = {S.SAMPLE_ID: cand[S.SAMPLE_ID].to_pylist()}
    for theirs, ours in _I2D_COLUMNS.items():
        columns[ours] = [found.get(str(sid), {}).get(theirs) for sid in columns[S.SAMPLE_ID]]
    keep = cand[S.KEEP].to_pylist()
    columns[S.DL_STATUS] = [
        status if status is not None else (NOT_ATTEMPTED if not kept else "missing_from_output")
        for status, kept in zip(columns[S.DL_STATUS], keep, strict=True)
    ]
    names = [c for c in S.DOWNLOAD_COLUMNS if c not in S.VERDICT_COLUMNS]
    return pa.table({c: pa.array(columns[c], S.COLUMNS[c].dtype) for c in names})


def _reasons(table: pa.Table) -> list[str | None]:
    """The download's own reject reason of each row of its manifest columns."""
    return [
        classify(s, e)
        for s, e in zip(table[S.DL_STATUS].to_pylist(), table[S.DL_ERROR].to_pylist(), strict=True)
    ]


def fetch_again(config: DownloadConfig, rows: pa.Table, tmp: Path, log_path: Path) -> pa.Table:
    """The stage's own fetch of ``rows`` (sample_id, url, alt_text; all kept upstream) for
    ``laionface retry``: their download manifest rows, verdicts included, in row order. The
    bytes are in img2dataset's ``tmp/out/00000.tar``, keyed by its own numbering of ``rows``."""
    results = DownloadStage(config)._fetch(rows, tmp, log_path)
    kept = pa.table({S.SAMPLE_ID: rows[S.SAMPLE_ID], S.KEEP: pa.array([True] * rows.num_rows)})
    table = _manifest_columns(kept, results)
    reasons = _reasons(table)
    table = table.append_column(S.KEEP, pa.array([r is None for r in reasons], pa.bool_()))
    return table.append_column(S.REJECT_REASON, pa.array(reasons, pa.string()))
