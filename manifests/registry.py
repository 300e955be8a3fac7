"""Config unions built from a registry, so that a backend is its own file plus one registry line.

Every extension point keeps one plain dict ``key -> pydantic config model`` in its package's
``__init__.py`` (DESIGN.md §5); each model declares ``type: Literal["<key>"]``. The
discriminated union that configs validate against is derived here from that dict, never
written out by hand beside it, so the two cannot drift apart:

    DetectorConfig = Annotated[DetectorSettings, Registered(DETECTORS)]

where ``DetectorSettings`` is a protocol of what every member offers (``build()``...): mypy
checks call sites against it, pydantic validates against the union.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Union, get_args

from pydantic import BaseModel, Field, GetCoreSchemaHandler
from pydantic_core import CoreSchema


class RegistryError(TypeError):
    """A registry whose keys and config models disagree: a programming error, raised at import."""


def registry_key(model: type[BaseModel]) -> str:
    """The key a config model declares with ``type: Literal["<key>"]``."""
    field = model.model_fields.get("type")
    literal = get_args(field.annotation) if field is not None else ()
    if len(literal) != 1 or not isinstance(literal[0], str):
        raise RegistryError(f"{model.__name__} needs exactly one `type: Literal[...]` key")
    return literal[0]


def config_union(registry: Mapping[str, type[BaseModel]]) -> Any:
    """``Annotated[A | B | ..., Field(discriminator="type")]`` over the registry's models, in
    registry order; checks that each key is the ``type`` its model declares. Typed ``Any``
    because a union built at run time is not a static type: modules give mypy a protocol of
    what every member offers under ``TYPE_CHECKING``."""
    for key, model in registry.items():
        if registry_key(model) != key:
            raise RegistryError(f"registry key {key!r} names {model.__name__}, whose type is "
                                f"{registry_key(model)!r}")  # fmt: skip
    members = tuple(registry.values())
    if not members:
        raise RegistryError("an empty registry has no config union")
    if len(members) == 1:
        # pydantic refuses a discriminator on a single model; the Literal still checks `type`
        return members[0]
    return Annotated[Union[members], Field(discriminator="type")]  # noqa: UP007


class Registered:
    """``Annotated[P, Registered(REG)]``: validate a field against the registry's config union
    (``config_union``), built when pydantic builds the model's schema, so a backend registered
    after import (a test's) is seen by every model defined after it."""

    def __init__(self, registry: Mapping[str, type[BaseModel]]) -> None:
        self.registry = registry

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return handler.generate_schema(config_union(self.registry))
