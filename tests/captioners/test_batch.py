"""``caption_batch``: cleaning, fallback, records and statistics for the shard report."""

from __future__ import annotations

import pyarrow as pa

from captioners import (
    AttributesConfig,
    CaptionContext,
    CaptionRecord,
    CaptionStats,
    CleaningConfig,
    ScriptedConfig,
    caption_batch,
)
from manifests import schema as S

ANSWERS = {
    "fine": "The image shows a woman with short grey hair smiling at the camera.",
    "refused": "I'm sorry, but I can't help with that.",
    "looping": "A man in a hat, in a hat, in a hat, in a hat, in a hat.",
    "long": "A child runs across a sunny garden while two dogs chase a red ball past a fence.",
    "failed": "error: image too large",
}
CONTEXTS = [CaptionContext(sample_id, "alt text here") for sample_id in ANSWERS]


def test_records_flags_and_counts_without_fallback() -> None:
    captioner = ScriptedConfig(answers=ANSWERS).build()
    batch = caption_batch(captioner, [], CONTEXTS, CleaningConfig(max_words=12))
    fine, refused, looping, long, failed = batch.records
    assert fine == CaptionRecord(
        "fine", "A woman with short grey hair smiling at the camera.", None, "scripted",
        "scripted", 10, 13, False, False, False, fine.seconds, None,
    )  # fmt: skip
    assert (refused.caption, refused.refusal, refused.words) == (None, True, 0)
    assert (looping.caption, looping.repetition) == ("A man in a hat.", True)
    # Cut at the 12th word, then the dangling article goes.
    assert (long.caption, long.truncated, long.words) == (
        "A child runs across a sunny garden while two dogs chase.",
        True,
        11,
    )
    assert (failed.caption, failed.error) == (None, "image too large")
    assert batch.stats == CaptionStats(
        images=5, seconds=batch.stats.seconds, generated_tokens=55, refusals=1, repetitions=1,
        shortened=1, errors=1, fallbacks=0, missing=2,
    )  # fmt: skip


def test_fallback_replaces_refusals_and_failures() -> None:
    batch = caption_batch(
        ScriptedConfig(answers=ANSWERS).build(), [], CONTEXTS, CleaningConfig(),
        fallback=AttributesConfig().build(),
    )  # fmt: skip
    refused, failed = batch.records[1], batch.records[4]
    assert (refused.caption, refused.model, refused.prompt_version, refused.refusal) == (
        'A photo captioned "alt text here".',
        "attributes",
        "attributes-v2",
        True,
    )
    assert (failed.caption_short, failed.error) == (
        'A photo captioned "alt text here".',
        "image too large",
    )
    assert (batch.stats.fallbacks, batch.stats.missing, batch.stats.refusals) == (2, 0, 1)


def test_columns_fit_the_schema_and_stats_add_up() -> None:
    batch = caption_batch(ScriptedConfig(answers=ANSWERS).build(), [], CONTEXTS, CleaningConfig())
    table = pa.Table.from_pydict(batch.columns(), schema=S.schema_for(S.CAPTION_RECORD_COLUMNS))
    assert table.num_rows == 5 and table.column(S.CAPTION_REFUSAL).to_pylist().count(True) == 1
    total = batch.stats + batch.stats
    assert (total.images, total.errors, total.generated_tokens) == (10, 2, 110)
    report = CaptionStats(images=4, seconds=2.0, generated_tokens=100).as_report()
    assert (report["caption_images_per_s"], report["caption_tokens_per_s"]) == (2.0, 50.0)
    assert report["caption_images"] == 4
