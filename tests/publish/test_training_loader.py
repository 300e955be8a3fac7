"""The package's training loaders over the demo's published shards."""

from __future__ import annotations

import itertools
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from manifests import schema as S
from proxt2i.corpus import IndexedCorpus, corpus_stream, iterate_batches, select_caption


def _captions(run_dir: Path) -> dict[str, tuple[str, str]]:
    tables = [pq.read_table(p) for p in sorted((run_dir / "caption").glob("[0-9]*.parquet"))]
    table = pa.concat_tables(tables)
    return {
        r[S.SAMPLE_ID]: (r[S.CAPTION], r[S.CAPTION_SHORT]) for r in table.to_pylist() if r[S.KEEP]
    }


def test_stream_is_resampled_decoded_and_cropped(reference_run: Path) -> None:
    captions = _captions(reference_run)
    tars = sorted(str(p) for p in (reference_run / "shards").glob("*.tar"))
    stream = corpus_stream(tars, resolution=32, caption="long", shuffle_buffer=4)
    pairs = list(itertools.islice(iter(stream), 12))  # more than the 4 samples: resampled
    assert len(pairs) == 12
    for image, text in pairs:
        assert image.shape == (3, 32, 32)
        assert float(image.min()) >= -1.0 and float(image.max()) <= 1.0
        assert text in {long for long, _ in captions.values()}


def test_indexed_corpus_gives_exact_epochs(reference_run: Path, tmp_path: Path) -> None:
    captions = _captions(reference_run)
    corpus = IndexedCorpus(reference_run / "shards" / "wids-index.json", 16, caption="short",
                           cache_dir=tmp_path)  # fmt: skip
    assert len(corpus) == len(captions) == 4
    seen = [corpus[i][1] for i in range(len(corpus))]
    assert sorted(seen) == sorted(short for _, short in captions.values())
    batches = list(iterate_batches(corpus, batch_size=2))
    assert [b[0].shape for b in batches] == [(2, 3, 16, 16), (2, 3, 16, 16)]


def test_mixed_caption_choice_is_deterministic_per_sample() -> None:
    meta = {"caption_short": "short"}
    picks = [select_caption("long", meta, "mixed", 0.5, f"key{i}") for i in range(200)]
    assert picks == [select_caption("long", meta, "mixed", 0.5, f"key{i}") for i in range(200)]
    assert 60 < picks.count("short") < 140
    assert select_caption("long", {}, "short", 1.0, "k") == "long"  # no short caption: long
