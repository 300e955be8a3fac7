"""Turning img2dataset's per-sample status and error text into reject reasons.

img2dataset reports ``status`` (success / failed_to_download / failed_to_resize) and the
exception text verbatim (``HTTP Error 404: Not Found``, ``timed out``, ...). The verbatim text
stays in ``dl_error``; the reason is a short, countable class of it.
"""

from __future__ import annotations

import re

from manifests import schema as S
from stages.address_policy import REDIRECT_LIMIT, UNSAFE_ADDRESS, UNSAFE_REDIRECT
from stages.host_politeness import HOST_SKIPPED, RATE_LIMITED
from stages.names import DOWNLOAD

NAME = DOWNLOAD
NOT_ATTEMPTED = "not_attempted"
SUCCESS = "success"

# Error texts of stages.browser_image.BrowserImageResizer, each its own reason below.
# DECODE_ERROR is img2dataset's own text for an image OpenCV cannot decode.
DECODE_ERROR = "Image decoding error"
UNSUPPORTED_MODE_ERROR = "unsupported image mode"
TOO_LARGE_ERROR = "image area too large for the decompression-bomb limit"


def _policy_refusal(marker: str) -> re.Pattern[str]:
    # Anchored: the address policy's own texts start with the marker (urllib wraps a refused
    # connect in "<urlopen error ...>"); a server's reason phrase can only follow "HTTP Error".
    return re.compile(rf"^(?:<urlopen error )?{re.escape(marker)}:")


# (pattern on the error text, reason suffix), first match wins: the address policy's and the
# host gate's refusals come first, before the generic "redirect" and "Errno" classes (a host
# skipped for opt-outs names "X-Robots-Tag", for failures the last error, e.g. "timed out").
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (_policy_refusal(UNSAFE_ADDRESS), "unsafe_address"),
    (_policy_refusal(REDIRECT_LIMIT), "redirect_limit"),
    (_policy_refusal(UNSAFE_REDIRECT), "unsafe_redirect"),
    (_policy_refusal(RATE_LIMITED), "rate_limited"),
    (_policy_refusal(HOST_SKIPPED), "host_skipped"),
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
    # Our resizer's texts first: the decoder's message they carry must not match a rule below.
    if error.startswith(DECODE_ERROR):
        return "undecodable"
    if error.startswith(UNSUPPORTED_MODE_ERROR):
        return "unsupported_mode"
    if error.startswith(TOO_LARGE_ERROR):
        return "too_large"
    lowered = error.lower()
    if "too small" in lowered or "min_image_size" in lowered:
        return "too_small"
    if "aspect ratio" in lowered:
        return "aspect_ratio"
    if "too large" in lowered or "max_image_area" in lowered:
        return "too_large"
    return "undecodable"
