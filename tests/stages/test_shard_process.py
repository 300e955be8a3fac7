"""The long-lived img2dataset shard process: one per worker thread, shard after shard, each
shard's output in its own log; a failed shard, a dead process and a changed environment."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds

import stages.download as download
from pipeline.demo import server_peer
from pipeline.demo_server import PHOTOS
from stages.download import DownloadConfig, run_img2dataset
from stages.img2dataset_shard import ShardProcess, ShardProcessDied

Settings = dict[str, dict[str, Any]]


@pytest.fixture
def settings(photo_base: str) -> Settings:
    config = {"allow_addresses": [server_peer(photo_base)], "image_size": 64}
    return DownloadConfig.model_validate(config).settings()


@pytest.fixture(autouse=True)
def fresh_process() -> Iterator[None]:
    """Each test starts without this thread's shard process and ends its own."""
    download._processes.proc = None
    yield
    proc = getattr(download._processes, "proc", None)
    if proc is not None:
        proc.close()
    download._processes.proc = None


def write_urls(tmp: Path, ids: list[str], urls: list[str]) -> Path:
    """The shard's URL list (img2dataset_shard.COLUMN_LIST), one row per id."""
    path = tmp / "urls.parquet"
    pq.write_table(pa.table({"sample_id": ids, "caption": ids, "url": urls}), path)
    return path


def current() -> ShardProcess:
    proc = download._processes.proc
    assert isinstance(proc, ShardProcess)
    return proc


def run_shard(tmp: Path, base: str, settings: Settings, names: list[str]) -> list[str]:
    """Download ``names`` into ``tmp``; the sample ids in the tar, sorted (img2dataset writes
    them as they arrive)."""
    tmp.mkdir(parents=True)
    urls = write_urls(tmp, names, [f"{base}/img/{name}.jpg" for name in names])
    run_img2dataset(settings, urls, tmp / "out", tmp / "shard.log")
    tar = wds.WebDataset(str(tmp / "out" / "00000.tar"), shardshuffle=False).decode()
    return sorted(sample["json"]["sample_id"] for sample in tar)


def test_one_process_serves_shard_after_shard_each_into_its_own_log(
    tmp_path: Path, photo_base: str, settings: Settings
) -> None:
    first, second = sorted(PHOTOS)[:2], sorted(PHOTOS)[2:5]  # sorted: as run_shard answers
    assert run_shard(tmp_path / "a", photo_base, settings, first) == first
    pid = current().proc.pid
    assert run_shard(tmp_path / "b", photo_base, settings, second) == second
    assert (current().proc.pid, current().jobs) == (pid, 2)
    # It never loaded torch (stages.img2dataset_shard.WithoutTorch): no libtorch is mapped.
    mapped = [m.path for m in psutil.Process(pid).memory_maps()]
    assert any("cv2" in path for path in mapped)
    assert not any("libtorch" in path for path in mapped)
    logs = [(tmp_path / x / "shard.log").read_text() for x in "ab"]
    assert [line for line in logs[0].splitlines() if line.startswith("img2dataset:")] == [
        "img2dataset: count=2, successes=2, failed_to_download=0, failed_to_resize=0"
    ]
    assert [line for line in logs[1].splitlines() if line.startswith("img2dataset:")] == [
        "img2dataset: count=3, successes=3, failed_to_download=0, failed_to_resize=0"
    ]


def test_a_failed_shard_is_an_error_and_the_process_serves_the_next(
    tmp_path: Path, photo_base: str, settings: Settings
) -> None:
    missing = tmp_path / "nothing.parquet"
    with pytest.raises(RuntimeError, match="img2dataset failed: FileNotFoundError") as error:
        run_img2dataset(settings, missing, tmp_path / "out", tmp_path / "bad.log")
    assert str(tmp_path / "bad.log") in str(error.value)
    assert "Traceback" in (tmp_path / "bad.log").read_text()
    pid = current().proc.pid
    assert run_shard(tmp_path / "a", photo_base, settings, ["astronaut"]) == ["astronaut"]
    assert current().proc.pid == pid


def test_a_killed_process_fails_its_shard_and_a_new_one_takes_the_next(
    tmp_path: Path, photo_base: str, settings: Settings
) -> None:
    run_shard(tmp_path / "a", photo_base, settings, ["astronaut"])
    dead = current()
    dead.proc.send_signal(signal.SIGKILL)
    dead.proc.wait()
    # Dead before the next shard: a fresh process runs it.
    assert run_shard(tmp_path / "b", photo_base, settings, ["astronaut"]) == ["astronaut"]
    assert current() is not dead
    # Killed during a shard: that shard fails, and says so; the next one gets a fresh process.
    dying = current()
    (tmp_path / "c").mkdir()
    slow = f"{photo_base}/slow/coffee.jpg"  # answers after 30 s: the shard is still running
    urls = write_urls(tmp_path / "c", ["s"], [slow])
    log = tmp_path / "c" / "shard.log"
    # A timeout beyond the slow answer: the shard runs 30 s, the window for the kill.
    patient = {**settings, "downloader": {**settings["downloader"], "timeout": 60}}
    killer = threading.Thread(
        target=kill_once_it_writes, args=(dying.proc.pid, log), daemon=True
    )  # daemon: a missed kill fails the test below instead of hanging the session
    killer.start()
    with pytest.raises(ShardProcessDied, match=f"img2dataset exited with -{signal.SIGKILL}"):
        run_img2dataset(patient, urls, tmp_path / "c" / "out", log)
    killer.join()
    assert download._processes.proc is None
    assert run_shard(tmp_path / "d", photo_base, settings, ["astronaut"]) == ["astronaut"]


def kill_once_it_writes(pid: int, log: Path) -> None:
    """SIGKILL ``pid`` once it has ``log`` open: it is running the shard of that log."""
    proc = psutil.Process(pid)
    while not any(Path(f.path) == log for f in proc.open_files()):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)


def test_a_changed_environment_or_enough_shards_start_a_new_process(
    tmp_path: Path, photo_base: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_shard(tmp_path / "a", photo_base, settings, ["astronaut"])
    first = current()
    monkeypatch.setenv("LAIONFACE_TEST_SHARD_PROCESS", "1")
    run_shard(tmp_path / "b", photo_base, settings, ["astronaut"])
    second = current()
    assert second is not first and first.proc.poll() == 0  # ended at the end of its jobs
    assert second.env["LAIONFACE_TEST_SHARD_PROCESS"] == "1"
    monkeypatch.setattr(download, "JOBS_PER_PROCESS", 2)
    run_shard(tmp_path / "c", photo_base, settings, ["astronaut"])
    assert current() is second and second.jobs == 2
    run_shard(tmp_path / "d", photo_base, settings, ["astronaut"])
    assert current() is not second and second.proc.poll() == 0 and current().jobs == 1


def test_the_process_exits_when_its_starter_closes_its_jobs() -> None:
    proc = ShardProcess()
    pid = proc.proc.pid
    assert psutil.Process(pid).is_running()
    proc.close()
    assert proc.proc.returncode == 0
    assert not psutil.pid_exists(pid)
