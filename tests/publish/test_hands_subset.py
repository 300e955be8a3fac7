"""The hand-focused subset in the published corpus: tags, subset indexes, card, report, loader.

The synthetic run (``tests.publish.synthetic``) gets hand columns in its filter manifests as
the ``hands`` filter scores them (scripted hands), then the shard stage publishes it: a0 and
b1 hold a hand that qualifies, a1 one too small, the other scored rows none.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from filters import HandsConfig
from filters.hand_detectors import FakeHandConfig
from filters.hands import hand_row
from manifests import schema as S
from manifests.io import write_table_atomic
from manifests.layout import RunLayout
from pipeline.refilter import read_decisions, refilter
from pipeline.report_data import collect
from pipeline.report_gallery import HANDS_TAGGED, galleries
from pipeline.report_html import hands_section
from proxt2i import corpus
from proxt2i.corpus import IndexedCorpus, SubsetMixSampler, corpus_stream, read_subset_positions
from stages.shard.records import member_key
from stages.shard.subsets import subset_list_name, subset_wids_name
from tests.publish.conftest import publish
from tests.publish.synthetic import SHARDS, build_run, sid

BIG = FakeHandConfig(box=(0.1, 0.5, 0.4, 0.9))  # 205 px on the 512 px synthetic images
SMALL = FakeHandConfig(box=(0.1, 0.5, 0.15, 0.55))  # 26 px: under subset_min_size_px 64
HANDS_OF = {sid("a0"): [BIG], sid("a1"): [SMALL], sid("b1"): [BIG]}
TAGGED = {sid("a0"), sid("b1")}
UNSCORED = {sid("a3"), sid("a4"), sid("a5")}  # rejected before or by face_count: no hand scores


def _add_hand_columns(layout: RunLayout, shard: int) -> None:
    """The hands filter's columns and tag, as the filter stage would store them."""
    path = layout.manifest("filter", shard)
    table = pq.read_table(path)
    rows: list[dict[str, Any]] = []
    for sample in SHARDS[shard]:
        if sample.sample_id in UNSCORED:
            rows.append(hand_row(None, (0, 0), None))
            continue
        hands = [h.to_hand(512, 512) for h in HANDS_OF.get(sample.sample_id, [])]
        rows.append(hand_row(hands, (512, 512), [100.0, 120.0, 300.0, 340.0]))
    columns: dict[str, Any] = {name: [row[name] for row in rows] for name in rows[0]}
    columns.update(HandsConfig().build().tag(columns))
    for name, values in columns.items():
        table = table.append_column(name, pa.array(list(values), S.COLUMNS[name].dtype))
    write_table_atomic(table, path)


@pytest.fixture(scope="module")
def hands_run(tmp_path_factory: pytest.TempPathFactory, local_client: object) -> Path:
    root = tmp_path_factory.mktemp("hands-published") / "run"
    layout = build_run(root)
    for shard in SHARDS:
        _add_hand_columns(layout, shard)
    publish(root, local_client)
    return root


def _index(run: Path) -> list[dict[str, Any]]:
    tables = [pq.read_table(p) for p in sorted((run / "shards").glob("*.parquet"))]
    return pa.concat_tables(tables).to_pylist()


def test_tag_in_every_index_row_and_json(hands_run: Path) -> None:
    rows = _index(hands_run)
    assert len(rows) == 6
    assert {r[S.SAMPLE_ID] for r in rows if r[S.HANDS_SUBSET]} == TAGGED
    assert all(r[S.HANDS_SUBSET] is False for r in rows if r[S.SAMPLE_ID] not in TAGGED)
    by_id = {r[S.SAMPLE_ID]: r for r in rows}
    assert by_id[sid("a0")][S.HAND_COUNT] == 1 and by_id[sid("a1")][S.HAND_COUNT] == 1
    assert by_id[sid("b0")][S.HAND_COUNT] == 0 and by_id[sid("b0")][S.HAND_SIZE_PX] is None


def test_json_member_carries_the_hands(hands_run: Path) -> None:
    import webdataset as wds

    tars = sorted(str(p) for p in (hands_run / "shards").glob("*.tar"))
    metas = {s["__key__"]: json.loads(s["json"]) for s in wds.WebDataset(tars, shardshuffle=False)}
    tagged = metas[member_key(sid("a0"))]
    assert tagged["hands_subset"] is True and tagged["scores"][S.HAND_COUNT] == 1
    (hand,) = tagged["hands"]
    assert hand["box_xyxy_px"] == pytest.approx([51.2, 256.0, 204.8, 460.8], abs=1e-4)
    assert hand["size_px"] == pytest.approx(204.8, abs=1e-4)
    assert hand["face_ratio"] == pytest.approx(1.024, abs=1e-4)
    assert (hand["handedness"], hand["inside_frame"], len(hand["landmarks_px"])) == (
        "right",
        True,
        21,
    )
    small = metas[member_key(sid("a1"))]
    assert small["hands_subset"] is False and len(small["hands"]) == 1
    assert metas[member_key(sid("b0"))]["hands"] == []


def test_subset_index_and_sample_list(hands_run: Path) -> None:
    import wids

    shards = hands_run / "shards"
    listed = json.loads((shards / subset_list_name("hands")).read_text())
    assert (listed["subset"], listed["tag"], listed["count"]) == ("hands", S.HANDS_SUBSET, 2)
    assert set(listed["sample_ids"]) == TAGGED
    full = wids.ShardListDataset(str(shards / "wids-index.json"))
    keys = [full[i]["__key__"] for i in listed["positions"]]
    assert keys == [member_key(s) for s in listed["sample_ids"]]
    subset_index = json.loads((shards / subset_wids_name("hands")).read_text())
    full_index = json.loads((shards / "wids-index.json").read_text())
    assert subset_index["__kind__"] == full_index["__kind__"]
    assert all(entry in full_index["shardlist"] for entry in subset_index["shardlist"])
    assert len(subset_index["shardlist"]) == 2  # a0 and b1 lie in two different tars
    subset = wids.ShardListDataset(str(shards / subset_wids_name("hands")))
    keys = [subset[i]["__key__"] for i in listed["subset_positions"]]
    assert keys == [member_key(s) for s in listed["sample_ids"]]
    card = (shards / "README.md").read_text()
    assert "- `hands`: 2 of 6 samples (33.3%), tagged `hands_subset`" in card


def test_trainer_reads_and_mixes_the_subset(hands_run: Path, tmp_path: Path) -> None:
    shards = hands_run / "shards"
    assert (
        subset_list_name("hands"),
        subset_wids_name("hands"),
        S.HANDS_SUBSET,
    ) == (corpus.HANDS_SUBSET_LIST, corpus.HANDS_SUBSET_WIDS, corpus.HANDS_TAG)
    captions = {r[S.SAMPLE_ID]: r[S.CAPTION] for r in _index(hands_run)}
    tagged_captions = {captions[s] for s in TAGGED}
    full = IndexedCorpus(shards / "wids-index.json", 16, cache_dir=tmp_path)
    positions = read_subset_positions(shards)
    only = SubsetMixSampler(len(full), positions, ratio=1.0, num_samples=8, seed=3)
    assert {full[i][1] for i in only} == tagged_captions
    half = list(SubsetMixSampler(len(full), positions, ratio=0.5, num_samples=600, seed=3))
    share = np.isin(half, positions).mean()  # 0.5 + 0.5 * 2/6 in expectation
    assert 0.6 < share < 0.74 and set(half) == set(range(len(full)))
    stream = corpus_stream(sorted(str(p) for p in shards.glob("*.tar")), 16, subset_ratio=1.0)
    assert {text for _, text in itertools.islice(iter(stream), 6)} <= tagged_captions
    with pytest.raises(ValueError, match="the subset is empty"):
        SubsetMixSampler(len(full), [], ratio=0.2)


def test_report_counts_and_shows_the_subset(hands_run: Path) -> None:
    layout = RunLayout(hands_run)
    data = collect(layout)
    hands = data.hands
    assert hands is not None
    assert (hands.images_scored, hands.images_with_hands, hands.hands) == (9, 3, 3)
    assert (hands.published, hands.published_tagged) == (6, 2)
    assert hands.sizes.count == 3 and hands.sizes.thresholds == []  # no hands in run.json
    # The section alone (the whole page's other plots are test_report's).
    tiles = galleries(layout, data.stages, [], tags=(HANDS_TAGGED,))
    assert {t.sample_id for t in tiles[HANDS_TAGGED]} == TAGGED
    section = hands_section(data, tiles)
    assert "3 hands in 3 of 9 scored images; 2 of 6 published samples (33.3%)" in section
    assert section.count("data:image/png;base64,") == 1  # the hand-size histogram
    assert section.count("data:image/jpeg;base64,") == 2  # a0 and b1


def test_refilter_redecides_the_tag_from_stored_scores(reference_run: Path, tmp_path: Path) -> None:
    """The demo (hands in its default chain) finds no hands; one stored hand of 70 px is then
    tagged or not by the subset rule alone, without running a model."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    layout = RunLayout(run_dir)
    shard = layout.done_shards("filter")[0]
    table = pq.read_table(layout.manifest("filter", shard))
    assert table[S.HANDS_SUBSET].to_pylist().count(True) == 0
    row = table[S.KEEP].to_pylist().index(True)  # a kept sample: the hands filter scored it
    hand = FakeHandConfig(box=(0.1, 0.5, 0.1 + 70 / 512, 0.6)).to_hand(512, 512)
    values = hand_row([hand], (512, 512), None)
    for name in (S.HAND_CONFIDENCES, S.HAND_SIZES_PX, S.HAND_INSIDE_FRAME):
        column = table[name].to_pylist()
        column[row] = values[name]
        table = table.set_column(
            table.column_names.index(name), name, pa.array(column, S.COLUMNS[name].dtype)
        )
    write_table_atomic(table, layout.manifest("filter", shard))
    sample = table[S.SAMPLE_ID][row].as_py()
    for size, tagged in ((60, {sample}), (80, set())):
        result = refilter(run_dir, [f"filter.hands.subset_min_size_px={size}"])
        decisions = read_decisions(result.path).to_pylist()
        assert {d[S.SAMPLE_ID] for d in decisions if d[S.HANDS_SUBSET]} == tagged
        assert result.after == result.before  # a tag never changes what is kept


def test_takedown_removes_a_sample_from_the_subset_files(hands_run: Path, tmp_path: Path) -> None:
    """a0 (tagged) and a1 (published, untagged) are taken down: the subset's sample list and
    wids index are rewritten without a0, and only a0's places name them."""
    import shutil

    import wids

    from pipeline.takedown import apply_takedown

    run = tmp_path / "run"
    shutil.copytree(hands_run, run)
    listing = tmp_path / "takedown.txt"
    listing.write_text(f"{sid('a0')}\n{sid('a1')}\n")
    result = apply_takedown(run, listing)
    subset_files = {f"shards/{subset_list_name('hands')}", f"shards/{subset_wids_name('hands')}"}
    assert result.removed == tuple(sorted([sid("a0"), sid("a1")]))
    assert subset_files <= set(result.places[sid("a0")])
    assert subset_files.isdisjoint(result.places[sid("a1")])
    shards = run / "shards"
    listed = json.loads((shards / subset_list_name("hands")).read_text())
    assert (listed["count"], listed["sample_ids"]) == (1, [sid("b1")])
    full = wids.ShardListDataset(str(shards / "wids-index.json"))
    assert [full[i]["__key__"] for i in listed["positions"]] == [member_key(sid("b1"))]
    subset = wids.ShardListDataset(str(shards / subset_wids_name("hands")))
    assert [subset[i]["__key__"] for i in listed["subset_positions"]] == [member_key(sid("b1"))]
    assert len(json.loads((shards / subset_wids_name("hands")).read_text())["shardlist"]) == 1
    assert (
        "- `hands`: 1 of 4 samples (25.0%), tagged `hands_subset`"
        in (shards / "README.md").read_text()
    )
