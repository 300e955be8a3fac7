"""A full disk or a read-only output directory (issue 11, part 3): one line that names the path,
the reason and the fix; no done marker; nothing half-written left, under its name or a temp.

Each case starts from a copy of the reference run with the stage under test undone, then
makes that stage's output directory a tiny tmpfs (full) or a read-only bind mount. Mounting
needs root; a process that permissions stop gets them instead for the read-only cases, and
the full-disk cases skip where mounting is not permitted (``faults.Mounts``).
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from manifests.layout import RunLayout
from pipeline.cli import main
from stages.shard.publish import published_path
from tests.conftest import demo_config
from tests.pipeline.faults import Mounts, fill, published_digests, temp_files, write_config

FIXES = {
    errno.ENOSPC: "No space left on device (ENOSPC); free space on its filesystem",
    errno.EROFS: "Read-only file system (EROFS); remount its filesystem read-write",
    errno.EACCES: "Permission denied (EACCES); give this user write permission to it",
}
AGAIN = "then run again: finished shards are kept"
# One output tar, so exactly one task writes into the publish directory and fails.
ONE_TAR = "shard.samples_per_shard=1000"


@pytest.fixture
def mounts() -> Iterator[Mounts]:
    made = Mounts()
    try:
        yield made
    finally:
        made.unmount_all()


def undone_copy(reference: Path, run_dir: Path, *stages: str) -> RunLayout:
    """A copy of the reference run without ``stages``' manifests, markers and outputs."""
    shutil.copytree(reference, run_dir)
    for stage in stages:
        shutil.rmtree(run_dir / stage)
    return RunLayout(run_dir)


def read_only(target: Path, mounts: Mounts) -> int:
    """Make ``target`` unwritable; the errno a write below it then fails with. Permissions
    stop a process unless it may override them (root's CAP_DAC_OVERRIDE); a read-only mount
    stops everyone."""
    target.chmod(0o555)
    try:
        (target / "probe").touch()
    except PermissionError:
        return errno.EACCES
    (target / "probe").unlink()
    target.chmod(0o755)
    mounts.read_only(target)
    return errno.EROFS


def assert_one_line(capsys: pytest.CaptureFixture[str], line: str) -> None:
    assert capsys.readouterr().err.splitlines() == [line]


def test_disk_full_while_publishing_then_room_again(
    tmp_path: Path,
    demo_input: Path,
    reference_run: Path,
    dask_address: str,
    mounts: Mounts,
    capsys: pytest.CaptureFixture[str],
) -> None:
    layout = undone_copy(reference_run, tmp_path / "run", "shard", "shards")
    out = layout.root / "shards"
    out.mkdir()
    mounts.tmpfs(out, "64k")  # the tar (some 350 kB) does not fit
    joined = f"cluster.address={dask_address}"
    full = write_config(
        tmp_path / "full.yaml", demo_config(layout.root, demo_input, joined, ONE_TAR)
    )
    assert main(["run", str(full)]) == 3
    assert_one_line(
        capsys, f"laionface run: cannot write {out}/00000.tar: {FIXES[errno.ENOSPC]}, {AGAIN}"
    )
    assert sorted(out.iterdir()) == []  # neither the tar nor its temp file
    assert not published_path(layout).exists()
    assert layout.done_shards("shard") == []

    # With room again (and the reference's tar size), the publication is the reference's.
    mounts.unmount(out)
    again = write_config(tmp_path / "again.yaml", demo_config(layout.root, demo_input, joined))
    assert main(["run", str(again)]) == 0
    assert published_digests(layout.root) == published_digests(reference_run)
    assert temp_files(layout.root) == []


def test_read_only_publish_directory(
    tmp_path: Path,
    demo_input: Path,
    reference_run: Path,
    dask_address: str,
    mounts: Mounts,
    capsys: pytest.CaptureFixture[str],
) -> None:
    layout = undone_copy(reference_run, tmp_path / "run", "shard", "shards")
    out = layout.root / "shards"
    out.mkdir()
    code = read_only(out, mounts)
    config = demo_config(layout.root, demo_input, f"cluster.address={dask_address}", ONE_TAR)
    assert main(["run", str(write_config(tmp_path / "run.yaml", config))]) == 3
    assert_one_line(capsys, f"laionface run: cannot write {out}/00000.tar: {FIXES[code]}, {AGAIN}")
    assert sorted(out.iterdir()) == []
    assert not published_path(layout).exists()
    assert layout.done_shards("shard") == []


def test_disk_full_while_captioning(
    tmp_path: Path,
    demo_input: Path,
    reference_run: Path,
    dask_address: str,
    mounts: Mounts,
    capsys: pytest.CaptureFixture[str],
) -> None:
    layout = undone_copy(reference_run, tmp_path / "run", "shard", "shards")
    # Caption shard 1 is to be done again, on a full disk (shard 0 stays done).
    caption = layout.stage_dir("caption")
    layout.done_marker("caption", 1).unlink()
    layout.manifest("caption", 1).unlink()
    kept = caption.rename(tmp_path / "caption-kept")
    caption.mkdir()
    mounts.tmpfs(caption, "1m")
    shutil.copytree(kept, caption, dirs_exist_ok=True)
    fill(caption)
    config = demo_config(layout.root, demo_input, f"cluster.address={dask_address}")
    cfg = write_config(tmp_path / "run.yaml", config)
    assert main(["run", str(cfg), "--stages", "caption"]) == 3
    assert_one_line(
        capsys,
        "laionface run: caption shard 00001 failed after 1 retries: OutputNotWritable: "
        f"cannot write {layout.manifest('caption', 1)}: {FIXES[errno.ENOSPC]}, {AGAIN}",
    )
    assert layout.done_shards("caption") == [0]
    assert not layout.manifest("caption", 1).exists()
    assert temp_files(layout.root) == []


def test_read_only_run_directory(
    tmp_path: Path, demo_input: Path, reference_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = undone_copy(reference_run, tmp_path / "run", "shard", "shards")
    cfg = write_config(tmp_path / "run.yaml", demo_config(layout.root, demo_input))
    before = layout.run_json.read_bytes()
    mounts = Mounts()
    try:
        code = read_only(layout.root, mounts)
        assert main(["run", str(cfg)]) == 3
    finally:
        mounts.unmount_all()
        layout.root.chmod(0o755)
    assert_one_line(
        capsys, f"laionface run: cannot write {layout.run_json}: {FIXES[code]}, {AGAIN}"
    )
    assert layout.run_json.read_bytes() == before  # the driver's first write; nothing ran
    assert temp_files(layout.root) == []


def test_read_only_stage_directory(
    tmp_path: Path,
    demo_input: Path,
    reference_run: Path,
    dask_address: str,
    mounts: Mounts,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A stale stage whose directory became read-only: the driver's first write there (the
    stale marker's removal) names the path and the fix; every marker stays as it was."""
    shutil.copytree(reference_run, tmp_path / "run")
    layout = RunLayout(tmp_path / "run")
    markers = {
        s: layout.done_marker("caption", s).read_bytes() for s in layout.done_shards("caption")
    }
    code = read_only(layout.root / "caption", mounts)
    config = demo_config(
        layout.root, demo_input, f"cluster.address={dask_address}", "caption.cleaning.max_words=5"
    )
    assert main(["run", str(write_config(tmp_path / "run.yaml", config))]) == 3
    marker = layout.done_marker("caption", min(markers))
    assert_one_line(capsys, f"laionface run: cannot write {marker}: {FIXES[code]}, {AGAIN}")
    mounts.unmount_all()
    assert {s: layout.done_marker("caption", s).read_bytes() for s in markers} == markers
