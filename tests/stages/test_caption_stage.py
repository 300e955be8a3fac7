"""The caption stage: the embedded attributes captioner on the demo, refusals and fallbacks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq

from manifests import schema as S
from manifests.io import join_stages, read_done
from manifests.layout import RunLayout
from stages import RunContext, build_stage
from stages.caption import CaptionStageConfig


def _caption_rows(run_dir: Path) -> list[dict[str, object]]:
    layout = RunLayout(run_dir)
    rows: list[dict[str, object]] = []
    for shard in layout.done_shards("caption"):
        rows += join_stages(layout, ["candidates", "caption"], shard).to_pylist()
    return rows


def test_attributes_captions_for_kept_samples(reference_run: Path) -> None:
    rows = _caption_rows(reference_run)
    kept = [r for r in rows if r[S.KEEP]]
    assert len(kept) == 4
    assert all(r[S.CAPTION] is None for r in rows if not r[S.KEEP])
    assert {(r[S.CAPTION_MODEL], r[S.CAPTION_PROMPT_VERSION]) for r in kept} == {
        ("attributes", "attributes-v2")
    }
    astronaut = next(r for r in kept if r[S.ALT_TEXT] == "photo of astronaut")
    assert astronaut[S.CAPTION] == (
        "A square medium shot of a person, showing their upper body. They face the camera, with "
        "their face at the top of the frame. They smile with an open mouth and look at the "
        "camera. Their face is in sharp focus and well exposed. The photo is captioned "
        '"photo of astronaut".'
    )
    assert astronaut[S.CAPTION_SHORT] == (
        "A square medium shot of a person, showing their upper body."
    )
    assert astronaut[S.CAPTION_WORDS] == 51
    assert astronaut[S.ALT_TEXT] == "photo of astronaut"  # the original text is never edited


def _rerun_caption(run_dir: Path, section: dict[str, object]) -> list[dict[str, object]]:
    config = CaptionStageConfig.model_validate(section)
    stage = build_stage("caption", config)
    layout = RunLayout(run_dir)
    for shard in layout.done_shards("caption"):
        report = stage.run_shard(shard, RunContext(run_dir))
        assert report.balanced()
    return [r for r in _caption_rows(run_dir) if r[S.CAPTION_MODEL] or r[S.REJECT_REASON]]


def test_refusals_and_errors_are_dropped_with_reasons(reference_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    kept = sorted(str(r[S.SAMPLE_ID]) for r in _caption_rows(run_dir) if r[S.KEEP])
    answers = {
        kept[0]: "I'm sorry, but I can't help with identifying people.",
        kept[1]: "error:boom",
    }
    rows = {
        r[S.SAMPLE_ID]: r
        for r in _rerun_caption(run_dir, {"captioner": {"type": "scripted", "answers": answers}})
    }
    assert rows[kept[0]][S.REJECT_REASON] == "caption:refused"
    assert rows[kept[0]][S.CAPTION_REFUSAL] is True
    assert rows[kept[1]][S.REJECT_REASON] == "caption:failed"
    assert rows[kept[1]][S.CAPTION_ERROR] == "boom"
    assert rows[kept[2]][S.CAPTION] == "A person looking at the camera."
    layout = RunLayout(run_dir)
    for shard in layout.done_shards("caption"):
        table = pq.read_table(layout.manifest("caption", shard))
        assert table.schema.names == [*S.CAPTION_RECORD_COLUMNS, *S.VERDICT_COLUMNS]
        report = read_done(layout, "caption", shard)
        assert report is not None


def test_fallback_captions_what_the_captioner_refused(reference_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    kept = sorted(str(r[S.SAMPLE_ID]) for r in _caption_rows(run_dir) if r[S.KEEP])
    section = {
        "captioner": {"type": "scripted", "answers": {kept[0]: "I cannot describe this image."}},
        "fallback": {"type": "attributes"},
    }
    rows = {r[S.SAMPLE_ID]: r for r in _rerun_caption(run_dir, section)}
    assert rows[kept[0]][S.KEEP] is True
    assert rows[kept[0]][S.CAPTION_MODEL] == "attributes"
    assert str(rows[kept[0]][S.CAPTION]).startswith("A ")
    assert rows[kept[1]][S.CAPTION_MODEL] == "scripted"
