"""A filter is its own file plus one registry line (docs/filters.md, "Add a filter").

``luma`` is defined here, registered in ``FILTERS`` (and nowhere else), and run through the
real code on the synthetic run of ``tests.publish``: the filter stage scores and decides it
on the download tars, the shard stage publishes its score, the report draws its threshold,
and ``refilter`` re-decides it from the stored scores with a new threshold.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel, ConfigDict, Field

import filters
import stages
from captioners import CaptionContext
from filters import FILTERS, Batch
from filters.arrays import Columns, floats, row_count, verdict
from filters.declarations import (
    Bound,
    DeclarationError,
    caption_context_columns,
    published,
    thresholds,
)
from manifests import schema as S
from manifests.fingerprint import DECISION
from manifests.io import write_done
from manifests.layout import RunLayout
from manifests.registry import RegistryError
from manifests.run_record import RunRecord, append_record
from pipeline import config as run_config
from pipeline.refilter import read_decisions, refilter
from pipeline.report_data import Threshold, collect
from pipeline.report_data import thresholds as report_thresholds
from stages.base import RunContext
from stages.filter import filter_stage_config
from stages.shard.records import member_key, score_columns
from tests.publish.conftest import local_client as local_client  # the session's Dask client
from tests.publish.conftest import publish
from tests.publish.synthetic import HOSTILE_ID, SHARDS, build_run, sid

NAME = "luma"
LUMA = "image_luma"  # the new score column (a real filter defines it in manifests/schema.py)
TOO_DARK = S.reason(NAME, "too_dark")
MISSING = S.reason(NAME, "missing")
_BT601 = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma weights


class LumaConfig(BaseModel):
    """The whole image's mean luma must reach ``min_luma``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["luma"] = "luma"
    published: ClassVar[tuple[str, ...]] = (LUMA,)
    thresholds: ClassVar[dict[str, tuple[str, Bound]]] = {"min_luma": (LUMA, "min")}
    caption_context: ClassVar[tuple[str, ...]] = (LUMA,)
    min_luma: float = Field(0.25, ge=0, le=1, json_schema_extra=DECISION)

    def build(self) -> LumaFilter:
        return LumaFilter(self)


@dataclass(frozen=True)
class LumaFilter:
    """Rejects images darker than ``min_luma`` on average (0: black, 1: white)."""

    config: LumaConfig
    name = NAME
    reads = ()
    writes = (LUMA,)
    reasons = (TOO_DARK, MISSING)

    @property
    def keep_column(self) -> str:
        # A filter module says ``keep_column = S.keep_column(NAME)``; here it is registered
        # when first asked, inside the ``registered`` fixture's copy of the schema.
        return S.keep_column(NAME)

    def score(self, batch: Batch) -> dict[str, list[Any]]:
        images = [batch.image(row) for row in range(len(batch))]
        return {LUMA: [None if im is None else float((im @ _BT601).mean() / 255) for im in images]}

    def decide(self, columns: Columns) -> tuple[np.ndarray, np.ndarray]:
        rows = row_count(columns, self.writes)
        luma = floats(columns, LUMA, rows)
        return verdict(rows, [(np.isnan(luma), MISSING), (luma < self.config.min_luma, TOO_DARK)])


# Mean luma of the synthetic run's photos (pipeline.demo_server.photo_bytes), from the stored
# float32 values; b5's image is missing from its download tar.
GOLDEN = {
    sid("a0"): 0.452634,  # astronaut
    sid("a1"): 0.302061,  # grace_hopper
    HOSTILE_ID: 0.469059,  # astronaut_crop
    sid("a5"): 0.406429,  # coffee
    sid("b0"): 0.452657,  # astronaut_resized
    sid("b1"): 0.335904,  # grace_hopper_crop
    sid("b2"): 0.45263,  # astronaut_rot90
    sid("b3"): 0.452465,  # astronaut_blur
    sid("b4"): 0.239128,  # rocket
}
CHAIN_CONFIG = {"chain": [NAME], NAME: {"type": NAME, "min_luma": 0.25}}


@pytest.fixture(scope="module")
def registered() -> Iterator[None]:
    """``luma`` in FILTERS, and what is built from FILTERS rebuilt; all undone afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(S, "COLUMNS", dict(S.COLUMNS))  # the score column, and luma_keep
        S.COLUMNS[LUMA] = S.Column(LUMA, pa.float32(), "mean BT.601 luma of the image, 0-1")
        patch.setitem(FILTERS, NAME, LumaConfig)
        _rebuild_config_models(patch)
        yield
    _rebuild_config_models(None)


def _rebuild_config_models(patch: pytest.MonkeyPatch | None) -> None:
    """The run config's models are built from the registries once per process (cached).
    Undone (``patch`` None), the registry gets the rebuilt class too: the one pickle finds
    as ``stages.filter.FilterStageConfig``."""
    filter_stage_config.cache_clear()
    run_config.run_config_model.cache_clear()
    if patch is not None:
        patch.setitem(stages.STAGES, "filter", filter_stage_config())
    else:
        stages.STAGES["filter"] = filter_stage_config()


@pytest.fixture(scope="module")
def run(registered: None, tmp_path_factory: pytest.TempPathFactory, local_client: object) -> Path:
    """The synthetic run, its filter stage run again with the chain ``[luma]``, published."""
    root = tmp_path_factory.mktemp("luma") / "run"
    layout = build_run(root)
    layout.run_json.unlink()  # the synthetic record's chain has no luma
    config = {"run_dir": str(root), "stages": ["filter", "shard"], "filter": CHAIN_CONFIG}
    append_record(layout, RunRecord(run_id="luma", started_at="", config=config))
    stage = filter_stage_config().model_validate(CHAIN_CONFIG).build()
    for shard in SHARDS:
        write_done(layout, stage.run_shard(shard, RunContext(root)))
    publish(root, local_client)
    return root


def _filter_rows(run: Path) -> dict[str, dict[str, Any]]:
    layout = RunLayout(run)
    tables = [pq.read_table(layout.manifest("filter", s)) for s in SHARDS]
    return {r[S.SAMPLE_ID]: r for r in pa.concat_tables(tables).to_pylist()}


def test_scored_and_decided_by_the_filter_stage(run: Path) -> None:
    table = pq.read_table(RunLayout(run).manifest("filter", 0))
    assert table.schema.names == [
        S.SAMPLE_ID, LUMA, "luma_keep", S.NOT_SCORED, S.KEEP, S.REJECT_REASON
    ]  # fmt: skip
    assert table.schema.field(LUMA).type == pa.float32()
    assert S.COLUMNS["luma_keep"] == S.Column("luma_keep", pa.bool_(), "luma filter verdict")
    rows = _filter_rows(run)
    assert {k: round(r[LUMA], 6) for k, r in rows.items() if r[LUMA] is not None} == GOLDEN
    assert {k: (r["luma_keep"], r[S.REJECT_REASON]) for k, r in rows.items()} == {
        **{k: (True, None) for k in GOLDEN if k != sid("b4")},
        sid("b4"): (False, TOO_DARK),
        sid("b5"): (False, MISSING),
        sid("a3"): (None, "candidates:invalid_url"),  # never entered the stage
        sid("a4"): (None, "download:http_404"),
    }


def test_published_in_the_json_and_the_index(run: Path) -> None:
    import webdataset as wds

    assert score_columns()[15:18] == (S.WATERMARK_SCORE, LUMA, S.SIMILARITY)  # schema order
    tars = sorted(str(p) for p in (run / "shards").glob("*.tar"))
    metas = {s["__key__"]: json.loads(s["json"]) for s in wds.WebDataset(tars, shardshuffle=False)}
    published_ids = [sid("a0"), sid("a1"), HOSTILE_ID, sid("b0"), sid("b1"), sid("b2")]
    assert {k: m["scores"][LUMA] for k, m in metas.items()} == {
        member_key(i): GOLDEN[i] for i in published_ids
    }
    index = pa.concat_tables(pq.read_table(p) for p in sorted((run / "shards").glob("*.parquet")))
    assert index.schema.field(LUMA).type == pa.float32()
    values = dict(zip(index[S.SAMPLE_ID].to_pylist(), index[LUMA].to_pylist(), strict=True))
    assert {k: round(v, 6) for k, v in values.items()} == {i: GOLDEN[i] for i in published_ids}


def test_its_threshold_is_drawn_in_the_report(run: Path) -> None:
    line = Threshold(LUMA, 0.25, "min", "filter.luma.min_luma")
    assert report_thresholds({"filter": CHAIN_CONFIG}) == [line]
    (histogram,) = [h for h in collect(RunLayout(run)).histograms if h.column == LUMA]
    assert (histogram.count, histogram.thresholds) == (len(GOLDEN), [line])
    assert histogram.mean == pytest.approx(np.mean(list(GOLDEN.values())), abs=1e-6)
    assert histogram.edges[0] == pytest.approx(GOLDEN[sid("b4")], abs=1e-6)


def test_refilter_redecides_it_with_a_new_threshold(run: Path) -> None:
    result = refilter(run, ["filter.luma.min_luma=0.32"])
    assert result.before == Counter({"kept": 8, TOO_DARK: 1, MISSING: 1})
    assert result.after == Counter({"kept": 7, TOO_DARK: 2, MISSING: 1})
    decisions = {d[S.SAMPLE_ID]: d for d in read_decisions(result.path).to_pylist()}
    assert {k: d[S.REJECT_REASON] for k, d in decisions.items()} == {
        **{k: None for k in GOLDEN},
        sid("a1"): TOO_DARK,
        sid("b4"): TOO_DARK,
        sid("b5"): MISSING,
        sid("a3"): "candidates:invalid_url",
        sid("a4"): "download:http_404",
    }
    assert [k for k, d in decisions.items() if d[S.KEEP]] == [
        k for k, d in decisions.items() if d["luma_keep"] and d[S.REJECT_REASON] is None
    ]


def test_captioners_are_offered_its_score(registered: None) -> None:
    columns = caption_context_columns(FILTERS)
    assert columns[-1] == LUMA
    row = {S.SAMPLE_ID: "x", S.ALT_TEXT: None, LUMA: 0.4, S.URL: "http://x"}
    assert dict(CaptionContext.from_row(row, columns).attributes) == {LUMA: 0.4}


def test_declarations_of_every_registered_filter_are_well_formed() -> None:
    for key, model in FILTERS.items():
        flt = model().build()  # type: ignore[attr-defined]
        assert set(published(model)) <= set(flt.writes), key
        assert {c for c, _ in thresholds(model).values()} <= set(S.COLUMNS), key
        assert flt.keep_column == f"{key}_keep"
        assert S.COLUMNS[flt.keep_column].doc.startswith(f"{key} filter verdict"), key


def test_a_bad_declaration_or_order_says_what_to_fix() -> None:
    class Typo(LumaConfig):
        thresholds: ClassVar[dict[str, tuple[str, Bound]]] = {"min_lum": (LUMA, "min")}

    with pytest.raises(DeclarationError, match=r"Typo.thresholds\['min_lum'\]: a threshold"):
        thresholds(Typo)

    class Unregistered(LumaConfig):
        published: ClassVar[tuple[str, ...]] = ("no_such_column",)

    with pytest.raises(DeclarationError, match=r"names \['no_such_column'\]: define them in"):
        published(Unregistered)
    with pytest.raises(RegistryError, match="'lumen' is not in FILTERS; 'image' is named twice"):
        filters.check_order(("image", "lumen", "image"), FILTERS)
    with pytest.raises(ValueError, match="'face_size_keep' is already defined as"):
        S.keep_column("face_size", note="a different meaning")
