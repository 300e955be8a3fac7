"""Which download failures ``laionface retry`` fetches again: exact reasons and reason classes.

A selector is a reason as the download stage writes it (``download:timeout``,
``download:http_503``) or a class of them: in an HTTP status code each ``x`` is any digit
(``download:http_5xx`` is http_500 .. http_599), and ``*`` is any text (``download:http_*``,
``download:*``). A selector that matches no reason the download stage can emit, nor any reason
found in the run's manifests, can never select a sample: it is refused before anything runs,
with the valid reasons named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from manifests import schema as S
from stages.download_errors import NAME

# The whys ``stages.download_errors.classify`` emits besides ``http_<code>``: its classes of
# download error texts (the politeness gate's ``rate_limited`` and ``host_skipped`` among them),
# of resize errors, and the statuses it passes on as they are (``missing_from_output`` from
# ``stages.download``, ``unknown`` for no status). The retry tests check this list against
# classify's own patterns, so a new class there fails them.
KNOWN_WHYS: Final = (
    "unsafe_address",
    "rate_limited",
    "host_skipped",
    "redirect_limit",
    "unsafe_redirect",
    "x_robots_tag",
    "timeout",
    "hash_mismatch",
    "dns",
    "connection",
    "tls",
    "redirect",
    "error",
    "undecodable",
    "unsupported_mode",
    "too_large",
    "too_small",
    "aspect_ratio",
    "missing_from_output",
    "unknown",
)
# urllib's "HTTP Error NNN" carries a three-digit status code; classify keeps it as http_NNN.
HTTP_CODES: Final = range(100, 600)
_PREFIX: Final = f"{NAME}:"
_HTTP_CODE: Final = re.compile(r"http_([0-9x]{3})")


@dataclass(frozen=True)
class ReasonSelector:
    """The reasons selected by ``laionface retry --reasons``, as compiled patterns."""

    specs: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]

    @classmethod
    def parse(cls, specs: Sequence[str], present: Iterable[str] = ()) -> ReasonSelector:
        """Compile ``specs``; ``present`` are the reasons in the run's download manifests.

        Raises ValueError (one line, naming the valid reasons) for a spec that is not a
        download reason or can never match one.
        """
        specs = tuple(s.strip() for s in specs if s.strip())
        if not specs:
            raise ValueError(f"no reasons given; valid: {valid_reasons(present)}")
        known = [*known_reasons(), *present]
        patterns = []
        for spec in specs:
            pattern = _compile(spec)
            if not spec.startswith(_PREFIX) or not any(pattern.fullmatch(r) for r in known):
                raise ValueError(
                    f"reason {spec!r} can never match a download failure; valid: "
                    f"{valid_reasons(present)}"
                )
            patterns.append(pattern)
        return cls(specs, tuple(patterns))

    def matches(self, reason: str | None) -> bool:
        return reason is not None and any(p.fullmatch(reason) for p in self.patterns)


def known_reasons() -> list[str]:
    """Every reason the download stage can emit (one per HTTP status code)."""
    return [
        *(S.reason(NAME, why) for why in KNOWN_WHYS),
        *(S.reason(NAME, f"http_{code}") for code in HTTP_CODES),
    ]


def valid_reasons(present: Iterable[str] = ()) -> str:
    """The valid selectors in one line: the reasons, HTTP codes folded into their classes."""
    named = {S.reason(NAME, why) for why in KNOWN_WHYS}
    named |= {
        r for r in present if r.startswith(_PREFIX) and not _HTTP_CODE.fullmatch(r[len(_PREFIX) :])
    }
    http = S.reason(NAME, "http_NNN")
    classes = ", ".join(S.reason(NAME, c) for c in ("http_4xx", "http_5xx", "http_*"))
    return f"{', '.join(sorted(named))}, {http} (classes: {classes}, {_PREFIX}*)"


def _compile(spec: str) -> re.Pattern[str]:
    """``*`` is any text; inside ``http_`` codes, ``x`` is any digit; the rest is literal."""
    out = []
    position = 0
    for match in _HTTP_CODE.finditer(spec):
        out.append(_glob(spec[position : match.start()]))
        out.append("http_" + "".join("[0-9]" if c == "x" else c for c in match.group(1)))
        position = match.end()
    out.append(_glob(spec[position:]))
    return re.compile("".join(out))


def _glob(text: str) -> str:
    return ".*".join(re.escape(part) for part in text.split("*"))
