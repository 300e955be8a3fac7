"""``laionface demo``: the whole pipeline offline, on photos served from loopback.

It writes a small LAION-5B-style candidate parquet whose URLs point at the loopback photo
server (photos, variants, and broken URLs of every kind), then runs ``configs/demo.yaml``.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.layout import RunLayout
from pipeline.config import load_config
from pipeline.demo_server import PHOTOS, serve_photos
from pipeline.report_html import write_report
from pipeline.runner import RunResult, run_pipeline

log = logging.getLogger(__name__)
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"

# (path on the server or a full URL, alt text); "{base}" is the server's address.
_BROKEN: tuple[tuple[str, str], ...] = (
    ("{base}/status/404", "a photo that is gone"),
    ("{base}/status/500", "a server error"),
    ("{base}/html", "a web page, not an image"),
    ("{base}/truncated.jpg", "a JPEG cut short"),
    ("{base}/noai/grace_hopper.jpg", "an image whose host forbids AI use"),
    ("{base}/slow/coffee.jpg", "a host that answers too late"),
    ("{base}/redirect/chelsea.jpg", "a redirect to a cat photo"),
    ("{base}/img/astronaut.jpg#dup", "the same URL again (fragment dropped)"),
    ("{base}/img/grace_hopper.jpg?copy=1", "the same bytes at another URL"),
    ("ftp://example.org/portrait.jpg", "a scheme that is not http"),
    ("http://", "a URL without a host"),
    ("", "an empty URL"),
)


def demo_rows(base: str) -> pa.Table:
    """The demo's candidate rows, in the LAION-5B layout."""
    urls = [f"{base}/img/{name}.jpg" for name in PHOTOS]
    texts = [f"photo of {name.replace('_', ' ')}" for name in PHOTOS]
    for url, text in _BROKEN:
        urls.append(url.format(base=base))
        texts.append(text)
    n = len(urls)
    return pa.table(
        {
            "URL": urls,
            "TEXT": texts,
            "WIDTH": pa.array([512] * n, pa.int64()),
            "HEIGHT": pa.array([512] * n, pa.int64()),
            "similarity": pa.array([0.32] * n, pa.float64()),
            "punsafe": pa.array([0.01] * n, pa.float64()),
            "pwatermark": pa.array([0.05] * n, pa.float64()),
        }
    )


def server_peer(url: str) -> str:
    """The ``IP:port`` of a loopback server's URL, as ``download.allow_addresses`` lists it."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def allow_photo_server(base: str) -> str:
    """The override that lets the download stage contact the photo server at ``base``.

    It is on loopback, which the connect-time address policy refuses; only its exact
    address and port are allowed, so a redirect to any other local port is still refused.
    """
    return f"download.allow_addresses=['{server_peer(base)}']"


@dataclass(frozen=True)
class DemoResult:
    run_dir: Path
    input_file: Path
    result: RunResult
    report: Path | None  # the HTML audit report, when the shard stage ran

    @property
    def shards_dir(self) -> Path:
        return self.run_dir / "shards"


def run_demo(out: Path, overrides: list[str] | None = None) -> DemoResult:
    """Serve the photos, write the candidates, run every configured stage into ``out``."""
    out = out.resolve()
    _discard_previous_demo(out / "run")
    input_file = out / "input" / "demo_candidates.parquet"
    input_file.parent.mkdir(parents=True, exist_ok=True)
    with serve_photos() as base:
        pq.write_table(demo_rows(base), input_file)
        config = load_config(
            DEMO_CONFIG,
            [
                f"run_dir={out / 'run'}",
                f"candidates.input=[{input_file}]",
                allow_photo_server(base),
                *(overrides or []),
            ],
        )
        result = run_pipeline(config)
    run_dir = RunLayout(config.run_dir).root
    report = write_report(run_dir).html if "shard" in config.stages and result.ok else None
    return DemoResult(run_dir, input_file, result, report)


def _discard_previous_demo(run_dir: Path) -> None:
    """A new demo starts from scratch: its photo server gets a new port, so a previous run's
    URLs would point nowhere. Only a directory that is a run (it has run.json) is removed."""
    if RunLayout(run_dir).run_json.is_file():
        log.info("removing the previous demo run in %s", run_dir)
        shutil.rmtree(run_dir)
