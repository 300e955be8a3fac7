"""What a user types into a config and reads back: the YAML file, ``--set`` overrides and the
one-line error that names the key to fix (DESIGN.md §8).

Every config of the project (the pipeline's run config, proxt2i's training, evaluation and
fine-tuning configs) is read, overridden and validated through this one module, so the same
``--set`` grammar and the same messages hold for every ``laionface`` subcommand:

- ``a.b.c=value`` sets ``c`` in section ``a.b`` (created when absent); the value is parsed as
  YAML (``5``, ``true``, ``[a, b]``, ``{type: x}``); a numeric part indexes a list
  (``objectives.0.zeta_init=2``).
- Problems raise :class:`ConfigError`, one line: ``config error in SOURCE: key: what``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration problem; its message is one line that says what to fix."""


def read_config_file(path: Path | str) -> dict[str, Any]:
    """The YAML mapping at ``path`` (an empty file is ``{}``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config error in {path}: not valid YAML ({_one_line(err)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config error in {path}: the top level must be a mapping")
    return data


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``data`` with each ``section.key=value`` applied in order (a new tree; ``data`` is kept)."""
    out: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(data))) or {}
    for item in overrides:
        dotted, sep, raw = item.partition("=")
        if not sep or not dotted:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        *parents, leaf = dotted.split(".")
        node: dict[str, Any] | list[Any] = out
        for part in parents:
            node = _child_section(node, part, item)
        _assign(node, leaf, _yaml_value(raw, item), item)
    return out


def _child_section(
    node: dict[str, Any] | list[Any], part: str, item: str
) -> dict[str, Any] | list[Any]:
    """The mapping or list under ``part``; a missing mapping key becomes an empty section."""
    child = node[_index(node, part, item)] if isinstance(node, list) else node.setdefault(part, {})
    if not isinstance(child, dict | list):
        raise ConfigError(f"--set {item!r}: {part!r} is not a section")
    return child


def _assign(node: dict[str, Any] | list[Any], leaf: str, value: Any, item: str) -> None:
    if isinstance(node, list):
        node[_index(node, leaf, item)] = value
    else:
        node[leaf] = value


def _index(items: list[Any], part: str, item: str) -> int:
    """``part`` as a position in ``items``; anything else is a one-line error."""
    if not part.isdigit() or int(part) >= len(items):
        raise ConfigError(
            f"--set {item!r}: {part!r} is not an index of a list of {len(items)} item(s)"
        )
    return int(part)


def _yaml_value(raw: str, item: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(
            f"--set {item!r}: the value is not valid YAML ({_one_line(err)})"
        ) from None


def validate_as(
    model: type[M], data: Mapping[str, Any], source: str, context: Any | None = None
) -> M:
    """``data`` validated as ``model``; any problem raises a one-line :class:`ConfigError`."""
    try:
        return model.model_validate(dict(data), context=context)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, data)) from None


def format_validation_error(
    err: ValidationError, source: str, data: Mapping[str, Any] | None = None
) -> str:
    """One line naming each offending key and what is wrong with it.

    With the validated ``data``, keys are spelled as in the YAML: pydantic puts the chosen
    member's tag of a discriminated union in the error location (``detector.insightface.
    model_root``), which is not a key the user can set.
    """
    parts = []
    for e in err.errors():
        key = ".".join(_yaml_key(e["loc"], data)) or "<top>"
        if e["type"] == "extra_forbidden":
            parts.append(f"{key}: unknown key")
        elif e["type"] == "missing":
            parts.append(f"{key}: required key is missing")
        elif e["type"] == "value_error":  # our validators already name the bad value
            parts.append(f"{key}: {e['msg'].removeprefix('Value error, ')}")
        else:
            parts.append(f"{key}: {e['msg']} (got {short_repr(e.get('input'))})")
    return f"config error in {source}: " + "; ".join(parts)


def _yaml_key(loc: tuple[int | str, ...], data: Mapping[str, Any] | None) -> list[str]:
    """``loc`` without the tags of discriminated unions (our unions discriminate on ``type``)."""
    parts: list[str] = []
    node: Any = data
    for part in loc:
        if isinstance(node, Mapping) and part not in node and node.get("type") == part:
            continue
        parts.append(str(part))
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return parts


def short_repr(value: object, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters, for one-line messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())
