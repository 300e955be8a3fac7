"""What a filter's config declares about its columns, and what derives from it over a registry.

A filter config may declare, as class attributes (each optional; read here with a default,
as ``filters.scoring.is_expensive`` reads ``expensive``):

- ``published: tuple[str, ...]``: score columns copied into every published sample's json
  (``scores``) and its index row (``stages.shard.records.score_columns``), and plotted in the
  audit report;
- ``thresholds: dict[str, tuple[str, Bound]]``: for each config field that is a threshold, the
  score column it applies to and how (``"min"``, ``"max"``, or ``"abs_max"`` on |value|), the
  lines the report draws on that column's histogram (``pipeline.report_data``);
- ``caption_context: tuple[str, ...]``: columns a captioner may read
  (``captioners.CaptionContext``; the caption stage passes them);
- ``subset_tags: tuple[str, ...]``: the bool tag columns of a filter that tags a subset
  (``hands``); its published scores go beside its tags, after every sample's own scores.

So adding a filter is its file plus one line in ``FILTERS`` (docs/filters.md, "Add a filter").
Declarations are read from the registry at call time, never copied at import, so a filter
registered later (a test's) is seen.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Literal, TypeAlias

from pydantic import BaseModel

from manifests import schema as S

Bound: TypeAlias = Literal["min", "max", "abs_max"]
Registry: TypeAlias = Mapping[str, type[BaseModel]]
_BOUNDS: tuple[Bound, ...] = ("min", "max", "abs_max")


class DeclarationError(TypeError):
    """A filter config declares a column the schema lacks, or a threshold that is no field of
    the config: a programming error, raised where the declaration is first read."""


def published(model: type[BaseModel]) -> tuple[str, ...]:
    """The score columns ``model``'s filter publishes (none unless declared)."""
    return _columns(model, "published")


def caption_context(model: type[BaseModel]) -> tuple[str, ...]:
    """The columns ``model``'s filter offers captioners (none unless declared)."""
    return _columns(model, "caption_context")


def subset_tags(model: type[BaseModel]) -> tuple[str, ...]:
    """The subset tag columns ``model``'s filter decides (none unless declared)."""
    return _columns(model, "subset_tags")


def thresholds(model: type[BaseModel]) -> dict[str, tuple[str, Bound]]:
    """``{config field: (score column, bound)}`` of ``model`` (empty unless declared)."""
    declared: Mapping[str, tuple[str, Bound]] = getattr(model, "thresholds", {})
    for field, (column, bound) in declared.items():
        if field not in model.model_fields or bound not in _BOUNDS:
            raise DeclarationError(
                f"{model.__name__}.thresholds[{field!r}]: a threshold names one of its fields "
                f"and a bound in {_BOUNDS}, not ({field!r}, {bound!r})"
            )
        _check_registered(model, "thresholds", (column,))
    return dict(declared)


def published_scores(registry: Registry, *, subsets: bool) -> tuple[str, ...]:
    """Published score columns of the registry's filters that tag a subset (``subsets``) or
    not, in schema order: the order is the schema's, whatever order filters register in."""
    return _published(tuple(registry.items()), len(S.COLUMNS), "subset" if subsets else "own")


def published_tags(registry: Registry) -> tuple[str, ...]:
    """Every subset tag column of the registry, in schema order."""
    return _published(tuple(registry.items()), len(S.COLUMNS), "tags")


@functools.lru_cache(maxsize=16)
def _published(
    entries: tuple[tuple[str, type[BaseModel]], ...],
    n_columns: int,
    part: Literal["own", "subset", "tags"],
) -> tuple[str, ...]:
    """One part of what a registry publishes. Read for every published sample, so cached on
    the registry's entries (and the schema's size), which registering a filter changes."""
    if part == "tags":
        return _schema_order(c for _, m in entries for c in subset_tags(m))
    chosen = [m for _, m in entries if bool(subset_tags(m)) is (part == "subset")]
    return _schema_order(c for m in chosen for c in published(m))


def caption_context_columns(registry: Registry) -> tuple[str, ...]:
    """Every column the registry's filters offer captioners, in registry order."""
    return tuple(dict.fromkeys(c for m in registry.values() for c in caption_context(m)))


def threshold_fields(registry: Registry) -> dict[tuple[str, str], tuple[str, Bound]]:
    """``{(filter key, config field): (score column, bound)}`` over the registry."""
    return {(key, f): target for key, m in registry.items() for f, target in thresholds(m).items()}


def _columns(model: type[BaseModel], attribute: str) -> tuple[str, ...]:
    declared = tuple(getattr(model, attribute, ()))
    _check_registered(model, attribute, declared)
    return declared


def _check_registered(model: type[BaseModel], attribute: str, columns: tuple[str, ...]) -> None:
    unknown = [c for c in columns if c not in S.COLUMNS]
    if unknown:
        raise DeclarationError(
            f"{model.__name__}.{attribute} names {unknown}: define them in manifests/schema.py"
        )


def _schema_order(columns: Iterable[str]) -> tuple[str, ...]:
    position = {name: i for i, name in enumerate(S.COLUMNS)}
    return tuple(sorted(dict.fromkeys(columns), key=position.__getitem__))
