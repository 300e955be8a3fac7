"""The audit report's thumbnails of taken-down samples (``RUN/audit.html``).

The report inlines a JPEG thumbnail per gallery tile, read from the download tars when it was
written; a takedown that purged those tars must not leave the pixels there. A report holding a
listed sample's thumbnail is written again: the retracted samples are rejected with
``takedown:requested``, which the gallery never shows an image for, and their bytes are gone.
A report written elsewhere (``laionface report --out``) is not known to the run.
"""

from __future__ import annotations

import html
import re

from manifests.layout import RunLayout
from pipeline.report_html import write_report

# A gallery tile with an image, as pipeline.report_html._tile_html writes it.
_THUMBNAIL_TILE = re.compile(
    r'<div class="tile"><img src="data:[^"]*" alt=""><br><code>([^<]*)</code>'
)


def thumbnails_in(page: str) -> set[str]:
    """The sample_ids that the audit report ``page`` shows a thumbnail of."""
    return {html.unescape(m.group(1)) for m in _THUMBNAIL_TILE.finditer(page)}


def purge_audit_report(layout: RunLayout, sample_ids: frozenset[str]) -> set[str]:
    """Rewrite the run's audit report if it shows any of ``sample_ids``; returns those it
    showed."""
    path = layout.audit_report
    if not path.is_file():
        return set()
    held = thumbnails_in(path.read_text(encoding="utf-8")) & sample_ids
    if held:
        write_report(layout.root)
    return held
