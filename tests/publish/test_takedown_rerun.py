"""After a takedown, ``laionface run`` gives the taken-down result again: the same config finds
every shard up to date and changes nothing, and a recompute of every stage never fetches a
listed URL and writes what the takedown wrote (DESIGN.md §3: fingerprints derive from the
config, so the takedown must leave manifests that a recompute reproduces)."""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests import schema as S
from manifests.io import read_stage_reports
from manifests.layout import RunLayout
from manifests.report import merge_reports
from pipeline.config import RunConfigBase
from pipeline.demo import allow_photo_server, demo_rows
from pipeline.demo_server import PHOTOS, photo_bytes
from pipeline.runner import run_pipeline
from pipeline.takedown import apply_takedown
from stages.shard.publish import read_published
from tests.conftest import demo_config
from tests.stages.policy_servers import CountingServer, image, serve

pytestmark = pytest.mark.slow
STAGES = ("candidates", "download", "filter", "dedup", "caption", "shard")
# The base run publishes astronaut, astronaut_crop, grace_hopper_crop and grace_hopper. Listed:
# a published photo that is nobody's duplicate, and a rejected one (face_count:zero) whose
# bytes were downloaded.
LISTED = ("grace_hopper_crop", "coffee")
KEPT_AFTER = ["astronaut", "astronaut_crop", "grace_hopper"]


@dataclass
class _PhotoServer:
    """The demo's photos at ``/img/<name>.jpg`` on loopback, and the requests per path."""

    counting: CountingServer
    input_file: Path = Path()  # the candidates parquet of its URLs, once written

    @property
    def base(self) -> str:
        return self.counting.base

    @property
    def requests(self) -> Counter[str]:
        return self.counting.hits


@pytest.fixture(scope="module")
def server() -> Iterator[_PhotoServer]:
    with serve() as counting:
        counting.routes.update({f"/img/{name}.jpg": image(photo_bytes(name)) for name in PHOTOS})
        yield _PhotoServer(counting)


def _config(run_dir: Path, server: _PhotoServer, *overrides: str) -> RunConfigBase:
    """The config of the base run (copies read the same input: it is part of the plan)."""
    # A generous timeout: on a loaded machine a good response must still arrive in time.
    return demo_config(
        run_dir,
        server.input_file,
        allow_photo_server(server.base),
        "candidates.shard_size=6",
        "download.timeout_s=60",
        *overrides,
    )


@pytest.fixture(scope="module")
def base_run(server: _PhotoServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's photos only (no broken URLs), two shards, run once: copy it to change it."""
    root = tmp_path_factory.mktemp("takedown-rerun")
    server.input_file = root / "in.parquet"
    pq.write_table(demo_rows(server.base).slice(0, len(PHOTOS)), server.input_file)
    assert run_pipeline(_config(root / "run", server)).ok
    return root / "run"


def _taken_down(server: _PhotoServer, base_run: Path, tmp_path: Path) -> tuple[Path, set[str]]:
    """A copy of the base run after a takedown of LISTED by URL; the listed sample_ids."""
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{server.base}/img/{name}.jpg\n" for name in LISTED))
    result = apply_takedown(run, listing)
    photos = _photos(run)
    assert sorted(photos[i] for i in result.listed) == sorted(LISTED)
    assert [photos[i] for i in result.removed] == ["grace_hopper_crop"]
    return run, set(result.listed)


def _photos(run: Path) -> dict[str, str]:
    """sample_id -> the photo its URL names."""
    out: dict[str, str] = {}
    for path in sorted((run / "candidates").glob("*.parquet")):
        table = pq.read_table(path, columns=[S.SAMPLE_ID, S.URL])
        for sid, url in zip(table[S.SAMPLE_ID].to_pylist(), table[S.URL].to_pylist(), strict=True):
            out[sid] = url.rsplit("/", 1)[-1].removesuffix(".jpg")
    return out


def _published(run: Path) -> list[str]:
    """The photos of the published corpus; the corpus holds exactly the tars it lists."""
    tars = [s.name for s in read_published(RunLayout(run)) or []]
    assert sorted(p.name for p in (run / "shards").glob("*.tar")) == sorted(tars)
    index = [pq.read_table(run / "shards" / t.replace(".tar", ".parquet")) for t in tars]
    photos = _photos(run)
    return sorted(photos[i] for table in index for i in table[S.SAMPLE_ID].to_pylist())


def _files(run: Path) -> dict[str, str]:
    """sha256 of every file under RUN but the records of invocations and the status cache."""
    skip = {"run.json", "report.json", "_done_summary.bin"}
    return {
        p.relative_to(run).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.name not in skip and "_logs" not in p.parts
    }


def _manifest(run: Path, stage: str) -> pa.Table:
    tables = [pq.read_table(p) for p in sorted((run / stage).glob("*.parquet"))]
    table = pa.concat_tables(tables)
    return table.drop_columns([c for c in table.column_names if c in S.VOLATILE_COLUMNS])


def _verdicts(run: Path, stage: str) -> dict[str, tuple[bool, str | None]]:
    rows = _manifest(run, stage).select([S.SAMPLE_ID, S.KEEP, S.REJECT_REASON]).to_pylist()
    return {r[S.SAMPLE_ID]: (r[S.KEEP], r[S.REJECT_REASON]) for r in rows}


def _counts(run: Path, stage: str) -> tuple[int, int, int, dict[str, int]]:
    report = merge_reports(stage, read_stage_reports(RunLayout(run), stage))
    return report.n_rows, report.n_in, report.n_out, report.dropped


def test_the_same_config_changes_nothing(
    server: _PhotoServer, base_run: Path, tmp_path: Path
) -> None:
    run, _ = _taken_down(server, base_run, tmp_path)
    assert _published(run) == KEPT_AFTER
    state, requests = _files(run), server.requests.copy()
    result = run_pipeline(_config(run, server))
    assert result.ok
    assert result.actions == {s: {"run": [], "re-decide": []} for s in STAGES}
    assert server.requests == requests
    assert _files(run) == state
    assert _published(run) == KEPT_AFTER


def test_a_recompute_never_fetches_a_listed_url_and_agrees(
    server: _PhotoServer, base_run: Path, tmp_path: Path
) -> None:
    run, listed = _taken_down(server, base_run, tmp_path)
    taken_down = {s: _manifest(run, s) for s in ("candidates", "filter", "dedup", "caption")}
    verdicts = {s: _verdicts(run, s) for s in STAGES}
    counts = {s: _counts(run, s) for s in STAGES}
    requests = server.requests.copy()
    # A produce field of the first stage: every shard of every stage is computed again.
    result = run_pipeline(_config(run, server, "candidates.dns_timeout_s=3"))
    assert result.ok
    assert result.actions == {s: {"run": [0, 1], "re-decide": []} for s in STAGES}
    fetched = server.requests - requests
    assert fetched == Counter({f"/img/{p}.jpg": 1 for p in PHOTOS if p not in LISTED})
    assert _published(run) == KEPT_AFTER
    urls = [f"{server.base}/img/{name}.jpg".encode() for name in LISTED]
    for tar in sorted(run.rglob("*.tar")):
        blob = tar.read_bytes()
        assert not [i for i in listed if i.encode() in blob], tar
        assert not [u for u in urls if u in blob], tar
    # The recompute writes what the takedown wrote (the download stage's keys are renumbered,
    # the shard stage cuts its tars again: their verdicts and counts agree).
    for stage, table in taken_down.items():
        assert _manifest(run, stage).equals(table), stage
    assert {s: _verdicts(run, s) for s in STAGES} == verdicts
    assert {s: _counts(run, s) for s in STAGES} == counts
    photos = _photos(run)
    assert {photos[i]: verdicts["candidates"][i] for i in listed} == {
        name: (False, "takedown:requested") for name in LISTED
    }
