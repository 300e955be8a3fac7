"""Fault injection for the kill tests (test_kill.py): SIGKILL a process at an exact point.

``KillOnFileEvent`` is a Dask worker plugin: it installs an audit hook (PEP 578) in every
worker, and the first worker (of all of them) that performs a matching file operation, e.g.
``os.rename`` of ``RUN/shards/.00000.tar.<uuid>.tmp`` into place, SIGKILLs itself right
there. Nothing in the library is replaced or told about it: the hook only observes the
operations the code performs anyway, so a kill lands at the same point on a loaded machine
as on an idle one, with no timing involved. A flag file (created with ``O_EXCL``) makes each
kill point fire once across all workers, including the ones the Nanny restarts.

Also here: the digests and sample ids of a published corpus, to compare two runs, and the
mounts that make an output directory full or read-only.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from distributed.diagnostics.plugin import WorkerPlugin

from manifests import schema as S
from manifests.layout import RunLayout
from pipeline.config import RunConfigBase
from stages.shard.publish import CARD
from stages.shard.writer import publish_dir

T = TypeVar("T")
# Generous: the machine may be loaded; a deadline only ends a test that would hang.
DEADLINE_S = 300.0


@dataclass(frozen=True)
class KillPoint:
    """A file operation to kill at: an audit event and an fnmatch pattern of its path.

    ``open`` (builtin and ``os.open``) carries the opened path; ``os.rename`` (raised by
    ``os.rename`` and ``os.replace``) carries the source path. PyArrow opens files in C++, so
    a Parquet write is caught at the rename of its temp file.
    """

    event: str
    pattern: str


class KillOnFileEvent(WorkerPlugin):
    """SIGKILLs the first worker that performs ``point``'s operation; ``flag`` records it."""

    def __init__(self, point: KillPoint, flag: Path) -> None:
        self.point = point
        self.flag = str(flag)

    def setup(self, worker: Any) -> None:
        # Audit hooks cannot be removed: a fired or torn-down point only ever returns early.
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event != self.point.event or not args or not isinstance(args[0], (str, os.PathLike)):
            return
        path = os.fspath(args[0])
        if not isinstance(path, str) or not fnmatch.fnmatchcase(path, self.point.pattern):
            return
        try:
            fd = os.open(self.flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, f"{os.getpid()} {event} {path}\n".encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class Kill:
    """A kill that happened: the process it killed and the operation it was about to do."""

    pid: int
    event: str
    path: Path


def read_kill(flag: Path) -> Kill:
    pid, event, path = flag.read_text().split(" ", 2)
    return Kill(int(pid), event, Path(path.strip()))


def poll(what: str, probe: Callable[[], T | None], alive: Callable[[], bool] | None = None) -> T:
    """Call ``probe`` until it returns a value; fail after DEADLINE_S or once ``alive`` says
    the thing being watched has ended (so a test never waits on something that finished)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = probe()
        if value is not None:
            return value
        if alive is not None and not alive():
            value = probe()
            if value is not None:
                return value
            raise AssertionError(f"ended before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {DEADLINE_S:g} s")
        time.sleep(0.02)


def gone(proc: psutil.Process) -> bool:
    """Whether ``proc`` has exited (a zombie nobody reaps counts: it runs no code)."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(procs: list[psutil.Process]) -> None:
    poll(f"exit of pids {[p.pid for p in procs]}", lambda: all(gone(p) for p in procs) or None)


def write_config(path: Path, config: RunConfigBase) -> Path:
    """``config`` as the YAML file ``laionface run`` reads."""
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path


def published_digests(run_dir: Path) -> dict[str, str]:
    """sha256 of every file of the published corpus, by name, except the card.

    The card (README.md) describes the invocation that produced the corpus: its run id, start
    time, config fingerprint and resolved config (run_dir, cluster, timeouts), and the funnel
    of that config's stages; ``card_summary`` compares the part that describes the tars.
    """
    out = publish_dir(RunLayout(run_dir))
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.iterdir())
        if p.name != CARD
    }


def card_summary(run_dir: Path) -> list[str]:
    """The card's lines before its funnel: title, sample and tar counts, files, takedowns."""
    lines = (publish_dir(RunLayout(run_dir)) / CARD).read_text(encoding="utf-8").splitlines()
    return lines[: lines.index("## Funnel")]


def published_ids(run_dir: Path) -> list[str]:
    """The sample ids of every published index, in tar order."""
    out = publish_dir(RunLayout(run_dir))
    tables = [pq.read_table(p, columns=[S.SAMPLE_ID]) for p in sorted(out.glob("*.parquet"))]
    return pa.concat_tables(tables)[S.SAMPLE_ID].to_pylist() if tables else []


def kept_ids(run_dir: Path) -> list[str]:
    """Sample ids the shard stage's manifests say are published, sorted."""
    layout = RunLayout(run_dir)
    ids: list[str] = []
    for shard in layout.done_shards("shard"):
        table = pq.read_table(layout.manifest("shard", shard), columns=[S.SAMPLE_ID, S.KEEP])
        ids += [s for s, k in zip(*table.to_pydict().values(), strict=True) if k]
    return sorted(ids)


def temp_files(run_dir: Path) -> list[Path]:
    """Temp files of atomic writes (``.<name>.<uuid>.tmp``) left anywhere in the run."""
    return sorted(run_dir.rglob(".*.tmp"))


class Mounts:
    """Mounts a test makes (a tiny tmpfs: a full disk; a read-only bind mount), all undone
    at the end. Needs root and a kernel that lets this process mount; else the test skips."""

    def __init__(self) -> None:
        self.points: list[Path] = []

    def _mount(self, *args: str) -> None:
        done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"mount {' '.join(args)} is not permitted here: {done.stderr.strip()}")

    def tmpfs(self, target: Path, size: str) -> None:
        self._mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target))
        self.points.append(target)

    def read_only(self, target: Path) -> None:
        """Make ``target`` a read-only view of itself (EROFS on every write below it)."""
        self._mount("--bind", str(target), str(target))
        self.points.append(target)
        self._mount("-o", "remount,ro,bind", str(target))

    def unmount(self, target: Path) -> None:
        subprocess.run(["umount", str(target)], check=True)
        self.points.remove(target)

    def unmount_all(self) -> None:
        for target in reversed(self.points):
            subprocess.run(["umount", "-l", str(target)], check=False)
        self.points.clear()


def fill(directory: Path) -> None:
    """Write a filler file in ``directory`` until its filesystem has no free block left."""
    fd = os.open(directory / "filler", os.O_CREAT | os.O_WRONLY)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as err:
        assert err.errno == errno.ENOSPC, err
    finally:
        os.close(fd)
