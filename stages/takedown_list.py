"""Takedown / opt-out lists: a text file of URLs, sample_ids or URL hashes, one per line."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from stages.urls import UrlProblem, normalize_url, url_hash

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
