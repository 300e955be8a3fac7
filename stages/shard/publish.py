"""The files that describe the published tars: wids index, subset indexes, checksums, card.

``finalize`` rewrites all of them from the list of published tars; the listed tars themselves
are never touched here, so a takedown that rebuilt one tar leaves every other tar as it was.
Tars of an earlier publication that the list no longer names (a republication cut into fewer
tars) are deleted with their indexes, and so are the temp files of writes a killed worker left
(its task was rerun elsewhere): the corpus directory holds exactly what is published.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

from manifests.io import discard_temps, write_text_atomic
from manifests.layout import RunLayout
from stages.names import SHARD
from stages.shard.card import render_card
from stages.shard.subsets import write_subsets
from stages.shard.writer import OutShard, index_name, publish_dir

WIDS_INDEX = "wids-index.json"
CHECKSUMS = "SHA256SUMS"
CARD = "README.md"
# wids' dataset description format (wids/wids_specs.py resolve_dsdesc, wids_index.py create):
# "__kind__", "wids_version" 1, and a "shardlist" of {url, nsamples, filesize, md5sum}.
_WIDS_KIND = "wids-shard-index-v1"
_WIDS_VERSION = 1
# The names stages.shard.plan.tar_name gives published tars.
_TAR_NAME = re.compile(r"^[0-9]{5,}\.tar$")


def published_path(layout: RunLayout) -> Path:
    return layout.stage_global(SHARD) / "published.json"


def read_published(layout: RunLayout) -> list[OutShard] | None:
    """The published tars, or None when the shard stage has not published yet."""
    path = published_path(layout)
    if not path.is_file():
        return None
    return [OutShard(**item) for item in json.loads(path.read_text(encoding="utf-8"))["shards"]]


def wids_index(shards: list[OutShard], name: str) -> dict:
    """The wids description; shard URLs are relative, resolved against the JSON's folder."""
    return {
        "__kind__": _WIDS_KIND,
        "wids_version": _WIDS_VERSION,
        "name": name,
        "shardlist": [
            {"url": s.name, "nsamples": s.nsamples, "filesize": s.filesize, "md5sum": s.md5}
            for s in shards
        ],
    }


def checksums(shards: list[OutShard]) -> str:
    """``sha256sum -c`` format: the tars and their Parquet indexes."""
    lines = []
    for s in shards:
        lines.append(f"{s.sha256}  {s.name}")
        lines.append(f"{s.index_sha256}  {index_name(s.name)}")
    return "".join(f"{line}\n" for line in lines)


def finalize(layout: RunLayout, shards: list[OutShard], dataset_name: str) -> None:
    """Write the wids index, the subsets' indexes, checksums and card, then the published list
    (last: the marker)."""
    shards = sorted(shards, key=lambda s: s.name)
    out = publish_dir(layout)
    out.mkdir(parents=True, exist_ok=True)
    wids = wids_index(shards, dataset_name)
    write_text_atomic(json.dumps(wids, indent=2) + "\n", out / WIDS_INDEX)
    write_subsets(out, shards, wids, dataset_name)  # before the card, which counts them
    write_text_atomic(checksums(shards), out / CHECKSUMS)
    _remove_unlisted(out, {s.name for s in shards})
    write_text_atomic(render_card(layout, shards, dataset_name), out / CARD)
    body = {"dataset_name": dataset_name, "shards": [asdict(s) for s in shards]}
    write_text_atomic(json.dumps(body, indent=2), published_path(layout))


def _remove_unlisted(out: Path, names: set[str]) -> None:
    """Delete the published tars (and indexes) of an earlier publication not in ``names``,
    and temp files of interrupted writes (every writer of the publication has finished)."""
    discard_temps(out)
    for tar in sorted(out.glob("*.tar")):
        if _TAR_NAME.match(tar.name) and tar.name not in names:
            tar.unlink()
            (out / index_name(tar.name)).unlink(missing_ok=True)
