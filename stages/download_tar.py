"""Reading a shard's download tar (img2dataset's members ``<dl_key>.<ext>``) by dl_key,
removing samples from a tar for a takedown, and replacing samples after a retry.

Only the headers are read when the tar is opened; an image's bytes are read when asked for,
so a stage holds one batch of images in memory, never a whole shard.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from manifests.layout import RunLayout
from stages.names import DOWNLOAD

# webdataset's rule (``base_plus_ext``): a member's sample key is its path up to the first dot
# of its file name, so ``0001.jpg``, ``0001.txt`` and ``0001.json`` are one sample.
_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
_COPY_CHUNK = 1 << 20


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
    path = layout.shard_file(DOWNLOAD, shard, ".tar")
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


def sample_key(name: str) -> str:
    """The webdataset sample key of the tar member ``name`` (the whole name if it has no dot)."""
    match = _KEY.match(name)
    return match.group(1) if match else name


def _data_end(info: tarfile.TarInfo) -> int:
    """Where the member's last data block ends (tarfile's own rule for what has data)."""
    stored = info.size if info.isreg() or info.type not in tarfile.SUPPORTED_TYPES else 0
    return info.offset_data + -(-stored // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _copy_range(src: BinaryIO, dst: BinaryIO, start: int, end: int) -> None:
    src.seek(start)
    left = end - start
    while left > 0:
        chunk = src.read(min(left, _COPY_CHUNK))
        if not chunk:
            raise EOFError(f"{getattr(src, 'name', 'tar')} ends before byte {end}")
        dst.write(chunk)
        left -= len(chunk)


def _copy_without(
    src: BinaryIO, members: list[tarfile.TarInfo], keys: Collection[str], out: BinaryIO
) -> None:
    """Copy the tar ``src`` to ``out`` block by block, leaving out the members of ``keys``.

    A member's blocks run from its first header (``TarInfo.offset`` includes a GNU long-name
    or pax header of its own) to the end of its data. Every other byte is copied as it is, so
    the other members keep their exact bytes and order.
    """
    position = 0  # the first byte of src neither copied nor left out yet
    for info in members:
        if sample_key(info.name) in keys:
            _copy_range(src, out, position, info.offset)
            position = _data_end(info)
    _copy_range(src, out, position, max(position, _data_end(members[-1])))
    # The end of the archive as tarfile writes it: two zero blocks, padded to a whole record.
    trailer = 2 * tarfile.BLOCKSIZE
    out.write(b"\0" * (trailer + (-(out.tell() + trailer)) % tarfile.RECORDSIZE))


def remove_samples(path: Path, keys: Collection[str]) -> frozenset[str]:
    """Rewrite the tar at ``path`` without the members of the sample ``keys``; returns the keys
    it held. Atomic: a temp file beside it, then a rename. A tar holding none is not touched."""
    with path.open("rb") as src:
        with tarfile.open(fileobj=src, mode="r:") as tar:
            members = tar.getmembers()
        held = frozenset(sample_key(m.name) for m in members) & frozenset(keys)
        if not held:
            return held
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with tmp.open("wb") as out:
                _copy_without(src, members, held, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return held


def _copy_kept(
    src: BinaryIO, members: list[tarfile.TarInfo], keys: Collection[str], out: BinaryIO
) -> None:
    """Copy every member of ``src`` outside the sample ``keys`` to ``out``, byte for byte and in
    order, without the end-of-archive blocks (``_copy_without`` writes those itself)."""
    position = 0
    for info in members:
        if sample_key(info.name) in keys:
            _copy_range(src, out, position, info.offset)
            position = _data_end(info)
    if members:
        _copy_range(src, out, position, max(position, _data_end(members[-1])))


def replace_samples(
    path: Path, drop: Collection[str], add: list[tuple[tarfile.TarInfo, bytes]]
) -> None:
    """Rewrite the tar at ``path``: the members of the sample keys ``drop`` left out, every other
    member kept byte for byte and in order, then ``add`` appended in the order given.

    A missing tar counts as empty. Atomic: a temp file beside it, then a rename. The same tar
    and the same arguments give the same bytes, so a retry that is run again rewrites what it
    wrote before (its members are in ``drop`` the second time).
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("wb") as out:
            if path.is_file():
                with path.open("rb") as src:
                    with tarfile.open(fileobj=src, mode="r:") as tar:
                        members = tar.getmembers()
                    _copy_kept(src, members, frozenset(drop), out)
            # tarfile starts writing at the file's position and pads the archive to a whole
            # record from the file's start (TarFile.__init__ takes offset = fileobj.tell()).
            with tarfile.open(fileobj=out, mode="w") as tar:
                for info, data in add:
                    tar.addfile(info, io.BytesIO(data))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
