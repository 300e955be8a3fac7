"""Takedown / opt-out lists (a text file of URLs, sample_ids or URL hashes, one per line), and
the run's takedown register: every sample_id ``laionface takedown`` removed from the run.

The register is run-wide input, not a stage's state: the candidates stage rejects its samples
(so no rerun downloads them again) and the shard stage marks them ``takedown`` in its manifest.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Final

from manifests import schema as S
from manifests.io import write_text_atomic
from manifests.layout import RunLayout
from stages.names import SHARD
from stages.urls import UrlProblem, normalize_url, url_hash

# The reason of every sample on the register, in every stage it reached: the first reason.
TAKEDOWN_REASON: Final = S.reason("takedown", "requested")

# Hex lengths accepted as "a hash of the URL": sample_id (16), md5 (32), sha1 (40), sha256 (64).
_HASH_LENGTHS = (16, 32, 40, 64)


@functools.cache
def load_takedown(path: Path) -> frozenset[str]:
    """All identifiers in the list, lower-cased; URLs are normalized first.

    Blank lines and lines starting with '#' are ignored. Cached per process: the list is read
    once per worker, not once per shard.
    """
    entries: set[str] = set()
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "://" in line:
            try:
                entries.add(normalize_url(line).url)
            except UrlProblem:
                entries.add(line)
        else:
            entries.add(line.lower())
    return frozenset(entries)


def url_identifiers(url: str, original: str | None) -> set[str]:
    """Every form under which a listed URL may appear in a takedown list."""
    ids = {url}
    for text in {url, (original or "").strip()} - {""}:
        data = text.encode("utf-8")
        ids.update(
            {
                url_hash(text),
                url_hash(text)[:16],
                hashlib.md5(data, usedforsecurity=False).hexdigest(),
                hashlib.sha256(data).hexdigest(),
            }
        )
    return ids


def is_listed(entries: frozenset[str], sample_id: str, url: str, original: str | None) -> bool:
    """Whether the sample is named in the list by URL, sample_id or any URL hash."""
    if sample_id in entries:
        return True
    return not entries.isdisjoint(url_identifiers(url, original))


def _legacy_register(layout: RunLayout) -> Path:
    # Where runs made before the register moved to RUN/takedowns/ kept it.
    return layout.stage_global(SHARD) / "takedown.json"


def read_takedown_register(layout: RunLayout) -> frozenset[str]:
    """Sample ids removed by takedown requests so far (never undone, kept across rebuilds)."""
    found: set[str] = set()
    for path in (layout.takedown_register, _legacy_register(layout)):
        if path.is_file():
            found.update(json.loads(path.read_text(encoding="utf-8"))["sample_ids"])
    return frozenset(found)


def write_takedown_register(layout: RunLayout, sample_ids: frozenset[str]) -> None:
    """Replace the register with ``sample_ids`` (callers pass the old register plus new ids)."""
    body = {"sample_ids": sorted(sample_ids)}
    write_text_atomic(json.dumps(body, indent=2), layout.takedown_register)
