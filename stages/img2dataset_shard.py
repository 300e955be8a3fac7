"""One shard of downloads with img2dataset's own ``Downloader``, as a subprocess entry point.

``python -m stages.img2dataset_shard SETTINGS_JSON URLS_PARQUET OUT_DIR``

``img2dataset.download()`` wraps its ``Downloader`` in a SIGINT handler, a logger process and
a process pool; the handler cannot be installed from a Dask worker thread, and the two extra
processes each re-import img2dataset (seconds per shard). Here the same ``Downloader`` (fetch,
X-Robots-Tag check, resize, sha256, webdataset writer) runs in this one process, on the
``Reader``'s input format: an Arrow IPC file with the shard's rows. Outputs are img2dataset's:
``OUT_DIR/00000.tar``, ``00000.parquet`` (per-sample status) and ``00000_stats.json``.
Its urllib obeys the connect-time address policy of ``SETTINGS_JSON["address_policy"]`` and
the per-host limits of ``SETTINGS_JSON["politeness"]`` (``stages.host_politeness``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from email.message import Message
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pyarrow as pa
import pyarrow.parquet as pq

from stages.address_policy import AddressPolicy, install
from stages.host_politeness import HostGate, OptOutCheck, Politeness

# The column order img2dataset's Reader produces: additional columns, caption, url.
COLUMN_LIST = ["sample_id", "caption", "url"]
# log10 of the largest shard count: img2dataset's default (keys are 5 + digits(samples)).
OOM_SHARD_COUNT = 5


def download_shard(settings: dict[str, Any], urls: Path, out_dir: Path) -> None:
    """Download every row of ``urls`` (columns: COLUMN_LIST) into ``out_dir``."""
    from img2dataset.downloader import Downloader
    from img2dataset.writer import WebDatasetSampleWriter

    from stages.browser_image import BrowserImageResizer

    out_dir.mkdir(parents=True, exist_ok=True)
    table = pq.read_table(urls).select(COLUMN_LIST)
    arrow_file = out_dir.parent / "shard.arrow"
    with pa.OSFile(str(arrow_file), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    resizer = BrowserImageResizer(**settings["resizer"])
    downloader = Downloader(
        sample_writer_class=WebDatasetSampleWriter,
        resizer=resizer,
        save_caption=True,
        extract_exif=False,
        output_folder=str(out_dir),
        column_list=COLUMN_LIST,
        number_sample_per_shard=max(table.num_rows, 1),
        oom_shard_count=OOM_SHARD_COUNT,
        compute_hash="sha256",
        verify_hash_type=None,
        blurring_bbox_col=None,
        **settings["downloader"],
    )
    # img2dataset fetches with urllib.request.urlopen: from here on every connection and
    # redirect it makes is checked against the address policy (stages.address_policy) and
    # waits for its host's turn (stages.host_politeness).
    opted_out = img2dataset_opt_out(
        downloader.user_agent_token, downloader.disallowed_header_directives
    )
    gate = HostGate(Politeness.from_settings(settings["politeness"]), opted_out)
    install(AddressPolicy.from_settings(settings["address_policy"]), gate)
    ok, _ = downloader((0, str(arrow_file)))
    if not ok:
        raise RuntimeError("img2dataset's Downloader failed on the shard (see the log above)")


def _never(headers: Message) -> bool:
    return False


def img2dataset_opt_out(token: str | None, directives: Iterable[str] | None) -> OptOutCheck:
    """img2dataset's own X-Robots-Tag test (``is_disallowed``), as its ``Downloader`` applies
    it (``token`` and ``directives`` as it normalized them), so the breaker counts exactly the
    samples img2dataset reports as opted out; never, when the header is ignored."""
    from img2dataset.downloader import is_disallowed

    if not directives:  # img2dataset skips the check for None (DownloadConfig: [] -> None)
        return _never
    return partial(
        is_disallowed, user_agent_token=token, disallowed_header_directives=set(directives)
    )


def main(argv: list[str]) -> int:
    """The subprocess's entry: its stdout is the shard log, so the summary goes there."""
    settings_json, urls, out_dir = argv
    download_shard(json.loads(settings_json), Path(urls), Path(out_dir))
    stats = json.loads((Path(out_dir) / "00000_stats.json").read_text())
    keys = ("count", "successes", "failed_to_download", "failed_to_resize")
    print("img2dataset: " + ", ".join(f"{k}={stats.get(k)}" for k in keys), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
