"""Turning img2dataset's per-sample status and error text into reject reasons.

img2dataset reports ``status`` (success / failed_to_download / failed_to_resize) and the
exception text verbatim (``HTTP Error 404: Not Found``, ``timed out``, ...). The verbatim text
stays in ``dl_error``; the reason is a short, countable class of it.
"""

from __future__ import annotations

import re

from manifests import schema as S

NAME = "download"
NOT_ATTEMPTED = "not_attempted"
SUCCESS = "success"

# (pattern on the error text, reason suffix), first match wins.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"HTTP Error (\d{3})"), "http_{0}"),
    (re.compile(r"X-Robots-Tag", re.I), "x_robots_tag"),
    (re.compile(r"timed? ?out", re.I), "timeout"),
    (re.compile(r"hash mismatch", re.I), "hash_mismatch"),
    (re.compile(r"Name or service not known|nodename nor servname|getaddrinfo", re.I), "dns"),
    (
        re.compile(r"Connection refused|Connection reset|RemoteDisconnected|Errno", re.I),
        "connection",
    ),
    (re.compile(r"certificate|SSL", re.I), "tls"),
    (re.compile(r"redirect", re.I), "redirect"),
)


def classify(status: str | None, error: str | None) -> str | None:
    """The reject reason of one sample, or None when it downloaded (or was never attempted)."""
    if status in (SUCCESS, NOT_ATTEMPTED):
        return None
    if status == "failed_to_resize":
        return S.reason(NAME, _resize_reason(error or ""))
    if status == "failed_to_download":
        return S.reason(NAME, _download_reason(error or ""))
    return S.reason(NAME, status or "unknown")


def _download_reason(error: str) -> str:
    for pattern, template in _PATTERNS:
        match = pattern.search(error)
        if match:
            return template.format(*match.groups())
    return "error"


def _resize_reason(error: str) -> str:
    lowered = error.lower()
    if "too small" in lowered or "min_image_size" in lowered:
        return "too_small"
    if "aspect ratio" in lowered:
        return "aspect_ratio"
    if "too large" in lowered or "max_image_area" in lowered:
        return "too_large"
    return "undecodable"
