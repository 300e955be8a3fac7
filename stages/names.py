"""The stages' names, in pipeline order: the keys of ``stages.STAGES``, the folders
``RUN/<stage>/`` and the prefixes of their reasons (``"<stage>:<why>"``).

Each stage module's ``NAME`` is one of these. A module that needs another stage's name (to
read its manifests or its config section) imports it from here rather than from that stage,
which may import it in turn.
"""

from __future__ import annotations

from typing import Final

CANDIDATES: Final = "candidates"
DOWNLOAD: Final = "download"
FILTER: Final = "filter"
DEDUP: Final = "dedup"
CAPTION: Final = "caption"
SHARD: Final = "shard"
