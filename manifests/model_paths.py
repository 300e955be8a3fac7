"""Whether config validation checks that model paths exist.

Validation checks every configured model path before any compute (a missing pack fails
``laionface validate``). Work that reads only manifests, such as ``refilter`` re-deciding
from stored scores on an auditor's machine without the models, validates with
``SKIP_MODEL_PATHS`` as the pydantic validation context, and the path validators pass.
"""

from __future__ import annotations

from pydantic import ValidationInfo

SKIP_MODEL_PATHS: dict[str, str] = {"model_paths": "skip"}


def checks_model_paths(info: ValidationInfo) -> bool:
    """False when the validation runs under ``SKIP_MODEL_PATHS``."""
    context = info.context
    return not (isinstance(context, dict) and context.get("model_paths") == "skip")
