"""Shards of downloads with img2dataset's own ``Downloader``, in a long-lived subprocess.

``python -m stages.img2dataset_shard --serve REPLY_FD`` reads one job per line on stdin (JSON:
``settings``, ``urls``, ``out``, ``log``), runs it with its output going to the job's log, and
answers one JSON line on ``REPLY_FD``; it exits at the end of stdin, so when the process that
started it ends. ``ShardProcess`` is that starter's side. Long-lived because importing
img2dataset costs ~8 s of CPU (it imports webdataset, which imports torch, and wandb): once per
shard that was most of a 250-row shard's download time (``bench/scale.py``). It runs without
torch (``WithoutTorch``).

``img2dataset.download()`` wraps its ``Downloader`` in a SIGINT handler, a logger process and
a process pool; the handler cannot be installed from a Dask worker thread, and the two extra
processes each re-import img2dataset (seconds per shard). Here the same ``Downloader`` (fetch,
X-Robots-Tag check, resize, sha256, webdataset writer) runs in this one process, on the
``Reader``'s input format: an Arrow IPC file with the shard's rows. Outputs are img2dataset's:
``out/00000.tar``, ``00000.parquet`` (per-sample status) and ``00000_stats.json``. During a
job its urllib obeys the connect-time address policy of ``settings["address_policy"]`` and the
per-host limits of ``settings["politeness"]`` (``stages.host_politeness``).
"""

from __future__ import annotations

import importlib.abc
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from email.message import Message
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import IO, Any

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


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One shard, its output (img2dataset's, ours, a traceback) appended to ``job["log"]``;
    the reply: ``{"ok": true}``, or ``ok`` false and the error in one line."""
    out_dir = Path(job["out"])
    with output_to(Path(job["log"])):
        try:
            download_shard(job["settings"], Path(job["urls"]), out_dir)
            stats = json.loads((out_dir / "00000_stats.json").read_text())
        except Exception as error:  # the shard fails, the process serves the next one
            traceback.print_exc()
            return {"ok": False, "error": f"{type(error).__name__}: {error}"}
        keys = ("count", "successes", "failed_to_download", "failed_to_resize")
        print("img2dataset: " + ", ".join(f"{k}={stats.get(k)}" for k in keys))
    return {"ok": True}


@contextmanager
def output_to(log: Path) -> Iterator[None]:
    """File descriptors 1 and 2 (Python's streams and C libraries' alike) write to ``log``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, old in zip((1, 2), saved, strict=True):
                os.dup2(old, fd)
                os.close(old)


def serve(jobs: IO[str], replies: IO[str]) -> int:
    """Run each job line of ``jobs`` and answer it on ``replies``, until ``jobs`` ends."""
    for line in jobs:
        replies.write(json.dumps(run_job(json.loads(line))) + "\n")
        replies.flush()
    return 0


class ShardProcessDied(RuntimeError):
    """The shard process ended without answering (killed, out of memory, crashed)."""


class ShardProcess:
    """The starter's side of one ``--serve`` process: a job at a time, from one thread.

    Started with a copy of the starter's environment; ``matches`` says whether it still is the
    process a fresh start would give, so a changed environment gets a new one."""

    def __init__(self) -> None:
        self.env = self.environment()
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__, "--serve", str(write_fd)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,  # between jobs; a job's output goes to its log
            stderr=subprocess.DEVNULL,
            env=self.env,
            pass_fds=(write_fd,),
            text=True,
        )
        os.close(write_fd)
        self.replies = os.fdopen(read_fd, "r")
        self.jobs = 0

    @staticmethod
    def environment() -> dict[str, str]:
        """The starter's environment, without albumentations' update check or wandb."""
        return {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}

    def matches(self) -> bool:
        return self.proc.poll() is None and self.env == self.environment()

    def run(self, settings: dict[str, Any], urls: Path, out: Path, log: Path) -> None:
        """Download one shard; RuntimeError if it failed, ShardProcessDied if the process
        ended (then it is closed)."""
        job = {"settings": settings, "urls": str(urls), "out": str(out), "log": str(log)}
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
            line = self.replies.readline()
        except BrokenPipeError:
            line = ""
        self.jobs += 1
        if not line:
            self.close()
            raise ShardProcessDied(f"img2dataset exited with {self.proc.returncode}; see {log}")
        reply = json.loads(line)
        if not reply["ok"]:
            raise RuntimeError(f"img2dataset failed: {reply['error']}; see {log}")

    def close(self) -> None:
        """End of jobs: the process exits; wait for it."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with suppress(BrokenPipeError):
                self.proc.stdin.close()
        self.proc.wait()
        self.replies.close()


class WithoutTorch(importlib.abc.MetaPathFinder):
    """Imports of torch fail as if it were not installed.

    img2dataset's writer imports webdataset, whose ``pytorch`` module imports torch only to
    subclass its DataLoader and IterableDataset, and falls back to stand-ins on
    ModuleNotFoundError. Nothing a shard process runs uses torch; without it the process
    starts in half the time and holds ~210 MB instead of ~680 MB, for as long as its worker
    lives."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> None:
        if fullname == "torch" or fullname.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)


def main(argv: list[str]) -> int:
    """The subprocess's entry: ``--serve REPLY_FD``."""
    if len(argv) != 2 or argv[0] != "--serve":
        raise SystemExit("usage: python -m stages.img2dataset_shard --serve REPLY_FD")
    sys.meta_path.insert(0, WithoutTorch())
    with os.fdopen(int(argv[1]), "w") as replies:
        return serve(sys.stdin, replies)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
