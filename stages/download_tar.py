"""Reading a shard's download tar (img2dataset's members ``<dl_key>.<ext>``) by dl_key.

Only the headers are read when the tar is opened; an image's bytes are read when asked for,
so a stage holds one batch of images in memory, never a whole shard.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from contextlib import contextmanager

from manifests.layout import RunLayout


def find_member(members: dict[str, tarfile.TarInfo], dl_key: str) -> tarfile.TarInfo | None:
    """The image member of ``dl_key`` in a download tar (img2dataset's ``<key>.<ext>``)."""
    for ext in ("jpg", "png", "webp"):
        info = members.get(f"{dl_key}.{ext}")
        if info is not None:
            return info
    return None


@contextmanager
def open_download_tar(
    layout: RunLayout, shard: int
) -> Iterator[tuple[tarfile.TarFile | None, dict[str, tarfile.TarInfo]]]:
    """The shard's download tar (None when it has none) and its file members by name; only
    the headers are read here."""
    path = layout.shard_file("download", shard, ".tar")
    if not path.is_file():
        yield None, {}
        return
    with tarfile.open(path, "r:") as tar:
        yield tar, {m.name: m for m in tar.getmembers() if m.isfile()}


def read_member(tar: tarfile.TarFile | None, info: tarfile.TarInfo | None) -> bytes | None:
    if tar is None or info is None:
        return None
    handle = tar.extractfile(info)
    return handle.read() if handle is not None else None


def image_bytes(
    tar: tarfile.TarFile | None, members: dict[str, tarfile.TarInfo], dl_key: object
) -> bytes | None:
    """The image of ``dl_key`` (None when the sample has no image in the tar)."""
    if dl_key is None:
        return None
    return read_member(tar, find_member(members, str(dl_key)))
