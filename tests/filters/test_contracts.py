"""Contract tests over every registered filter: interface, empty batch, shapes, reasons, purity.

A new filter is tested by being registered in FILTERS (and, if it needs a model, given an
offline config in chains.offline_configs).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from filters import FILTERS, RECOMMENDED_ORDER, Batch, score_batch
from filters.protocol import Filter
from manifests import schema as S
from tests.filters.chains import build_chain, offline_configs, scripted_images
from tests.filters.conftest import encode

TEXTS = ["a portrait photo of a person"] * 7 + [None]


@pytest.fixture(scope="module")
def chain(clip_checkpoint: Path) -> dict[str, Filter]:
    return {flt.name: flt for flt in build_chain(offline_configs(clip_checkpoint))}


@pytest.fixture(scope="module")
def batch() -> Batch:
    blobs = [encode(image) for image in scripted_images()] + [b"junk"]
    return Batch.from_bytes(blobs, {S.ALT_TEXT: TEXTS})


@pytest.fixture(scope="module")
def scored(chain: dict[str, Filter], batch: Batch) -> dict[str, list[Any]]:
    return score_batch(list(chain.values()), batch, score_rejected=True)


def test_every_registered_filter_is_covered(chain: dict[str, Filter]) -> None:
    # (the config union is built from FILTERS: tests/test_registries.py validates every key)
    assert list(chain) == list(FILTERS) == list(RECOMMENDED_ORDER)


@pytest.mark.parametrize("key", list(FILTERS))
def test_interface(key: str, chain: dict[str, Filter]) -> None:
    flt = chain[key]
    assert flt.name == key
    assert S.COLUMNS[flt.keep_column].dtype == pa.bool_() and flt.keep_column.startswith(key)
    assert set(flt.reads) | set(flt.writes) <= set(S.COLUMNS)
    assert flt.reasons and all(r.startswith(f"{key}:") for r in flt.reasons)
    assert S.reason(key, "missing") in flt.reasons
    assert FILTERS[key]().type == key  # type: ignore[attr-defined]


@pytest.mark.parametrize("key", list(FILTERS))
def test_config_rejects_unknown_keys(key: str) -> None:
    with pytest.raises(ValueError, match="extra"):
        FILTERS[key](not_a_setting=1)


@pytest.mark.parametrize("key", list(FILTERS))
def test_empty_batch(key: str, chain: dict[str, Filter]) -> None:
    flt = chain[key]
    empty = Batch((), {name: [] for name in (*flt.reads, S.ALT_TEXT)})
    assert flt.score(empty) == {name: [] for name in flt.writes}
    keep, reasons = flt.decide({name: [] for name in (*flt.reads, *flt.writes)})
    assert keep.shape == (0,) and reasons.shape == (0,) and keep.dtype == bool


@pytest.mark.parametrize("key", list(FILTERS))
def test_score_shapes(key: str, chain: dict[str, Filter], batch: Batch, scored: dict) -> None:
    flt = chain[key]
    out = flt.score(batch.with_columns(scored))
    assert set(out) == set(flt.writes)
    assert all(len(values) == len(batch) for values in out.values())


@pytest.mark.parametrize("key", list(FILTERS))
def test_reasons_are_declared(key: str, chain: dict[str, Filter], scored: dict) -> None:
    keep, reasons = chain[key].decide(scored)
    assert keep.dtype == bool and keep.shape == reasons.shape == (len(TEXTS),)
    assert all(r is None for r in reasons[keep])
    assert set(reasons[~keep]) <= set(chain[key].reasons)


@pytest.mark.parametrize("key", list(FILTERS))
def test_decide_is_pure(key: str, chain: dict[str, Filter], scored: dict) -> None:
    before = copy.deepcopy(scored)
    first = chain[key].decide(scored)
    second = chain[key].decide(scored)
    assert scored == before
    assert np.array_equal(first[0], second[0]) and list(first[1]) == list(second[1])


@pytest.mark.parametrize("key", list(FILTERS))
def test_decide_reads_arrow_like_lists(key: str, chain: dict[str, Filter], scored: dict) -> None:
    """refilter decides from Parquet: Arrow columns must give the same verdicts as lists."""
    flt = chain[key]
    names = [n for n in (*flt.reads, *flt.writes) if n in scored]
    table = pa.table({n: scored[n] for n in names}, schema=S.schema_for(names))
    from_arrow = flt.decide({n: table[n] for n in names})
    from_lists = flt.decide(scored)
    assert np.array_equal(from_arrow[0], from_lists[0])
    assert list(from_arrow[1]) == list(from_lists[1])
