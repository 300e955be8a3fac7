"""What a stage reads: the upstream-verdict helper, and the declarations planning holds it to.

``read_upstream`` joins the manifests a stage declares in ``reads`` and hands over the verdict
of the last; ``check_reads`` (run by every planner) refuses a stage that reads a stage after
it or outside the run, and near-dedup without the image filter's perceptual hash.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pytest

from manifests import schema as S
from manifests.io import write_done, write_table_atomic
from manifests.layout import RunLayout
from manifests.report import ShardReport
from manifests.verdicts import Upstream, read_upstream
from pipeline.cli import main
from pipeline.config import ConfigError, validate_config
from pipeline.run_plan import check_reads
from pipeline.runner import plan_pipeline
from stages import STAGES, build_stage
from stages.download import DownloadStage
from stages.filter import NAME as FILTER

PHASH_FIX = (
    "stage dedup needs column 'phash', which none of the stages it reads (download, filter) "
    "writes under this config: near-dedup compares perceptual hashes: add the `image` filter "
    "to filter.chain with perceptual_hash: true, or set dedup.near: false"
)


def _write(layout: RunLayout, stage: str, columns: dict[str, list[object]]) -> None:
    table = pa.table({c: pa.array(v, S.COLUMNS[c].dtype) for c, v in columns.items()})
    write_table_atomic(table, layout.manifest(stage, 0))


def test_read_upstream_joins_the_reads_and_takes_the_last_verdict(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    _write(layout, "candidates", {
        S.SAMPLE_ID: ["a", "b", "c"], S.URL: ["u1", "u2", "u3"],
        S.KEEP: [True, True, False], S.REJECT_REASON: [None, None, "candidates:invalid_url"],
    })  # fmt: skip
    _write(layout, "download", {  # another row order: the join follows the first stage's
        S.SAMPLE_ID: ["c", "b", "a"], S.DL_KEY: ["k3", None, "k1"],
        S.KEEP: [False, None, True],
        S.REJECT_REASON: ["candidates:invalid_url", None, None],
    })  # fmt: skip
    up = read_upstream(layout, ("candidates", "download"), 0, [S.URL, S.DL_KEY])
    assert up.rows.column_names == [S.SAMPLE_ID, S.URL, S.DL_KEY, S.KEEP, S.REJECT_REASON]
    assert up.rows[S.DL_KEY].to_pylist() == ["k1", None, "k3"]
    assert up.keep.tolist() == [True, False, False]  # null: never judged, not kept
    assert up.reasons == [None, None, "candidates:invalid_url"]

    after = up.combine(["download:http_404", "download:http_500", "download:timeout"])
    assert (after.keep.tolist(), after.reasons) == (
        [False, False, False],
        ["download:http_404", None, "candidates:invalid_url"],  # b never entered: no reason
    )
    report = up.count("filter", 0, after, seconds={"score": 1.5})
    assert (report.n_rows, report.n_in, report.n_out, report.dropped, report.seconds) == (
        3, 1, 0, {"download:http_404": 1}, {"score": 1.5},
    )  # fmt: skip


def test_entering_rows_have_no_upstream_verdict() -> None:
    up = Upstream.entering(pa.table({S.SAMPLE_ID: ["a", "b"]}))
    after = up.combine([None, "candidates:duplicate_url"])
    assert (up.keep.tolist(), up.reasons) == ([True, True], [None, None])
    assert after.reasons == [None, "candidates:duplicate_url"]
    assert up.count("candidates", 4, after).dropped == {"candidates:duplicate_url": 1}


def test_every_stage_reads_stages_before_it_and_waits_for_the_last(tmp_path: Path) -> None:
    config = validate_config({"run_dir": str(tmp_path)})
    built = [build_stage(n, config.stage_config(n)) for n in STAGES]
    order = list(STAGES)
    for stage in built:
        assert stage.upstream == (stage.reads[-1] if stage.reads else None), stage.name
        assert [order.index(r) for r in stage.reads] == sorted(order.index(r) for r in stage.reads)
    check_reads(built, order, RunLayout(tmp_path))  # the registry as it is passes
    assert {s.name: s.reads for s in built}["caption"] == (
        "candidates", "download", "filter", "dedup",
    )  # fmt: skip


class _ReadsAhead(DownloadStage):
    """A download stage that claims to read the filter stage's manifests."""

    reads: ClassVar[tuple[str, ...]] = (FILTER,)


def test_reading_a_later_stage_is_refused(tmp_path: Path) -> None:
    config = validate_config({"run_dir": str(tmp_path)})
    stage = _ReadsAhead(config.stage_config("download"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as err:
        check_reads([stage], ["download"], RunLayout(tmp_path))
    assert str(err.value) == (
        "stage download reads 'filter', which is not upstream of it (it may read ['candidates'])"
    )


def test_a_read_stage_must_be_in_the_run_or_done_on_disk(tmp_path: Path) -> None:
    config = validate_config({"run_dir": str(tmp_path), "stages": ["filter"]})
    with pytest.raises(ConfigError) as err:
        plan_pipeline(config)
    assert str(err.value) == (
        f"stage filter reads candidates, which is not in this run: add candidates to stages "
        f"(or run it first in {tmp_path})"
    )
    layout = RunLayout(tmp_path)
    for stage in ("candidates", "download"):  # done by an earlier invocation
        write_done(layout, ShardReport(stage, (0,), 0, 0, 0))
    assert plan_pipeline(config) == [
        "filter: all shards to run (the candidates stage has not planned yet)"
    ]


@pytest.mark.parametrize(
    "settings",
    [{"chain": ["face_count", "face_size"]}, {"image": {"perceptual_hash": False}}],
    ids=["no-image-filter", "no-perceptual-hash"],
)
def test_near_dedup_needs_the_perceptual_hash(tmp_path: Path, settings: dict) -> None:
    config = {"run_dir": str(tmp_path), "filter": settings}
    with pytest.raises(ConfigError) as err:
        plan_pipeline(validate_config(config))
    assert str(err.value) == PHASH_FIX
    exact_only = validate_config({**config, "dedup": {"near": False}})
    assert len(plan_pipeline(exact_only)) == len(STAGES)


def test_the_cli_says_so_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"run_dir: {tmp_path / 'run'}\nfilter: {{chain: [face_count]}}\n")
    assert main(["run", str(cfg), "--dry-run"]) == 2
    assert capsys.readouterr().err == f"laionface run: {PHASH_FIX}\n"
    assert main(["validate", str(cfg)]) == 2  # validate holds the stages to the same
    assert capsys.readouterr().err == f"laionface validate: {PHASH_FIX}\n"
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_the_filter_stage_provides_the_perceptual_hash_by_default(tmp_path: Path) -> None:
    config = validate_config({"run_dir": str(tmp_path)})
    stage = build_stage(FILTER, config.stage_config(FILTER))
    assert S.PHASH in stage.columns
    assert stage.provides == stage.columns
