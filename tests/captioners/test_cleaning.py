"""Caption cleaning: openings, whitespace, loops, refusals and both length limits."""

from __future__ import annotations

import pytest

from captioners.cleaning import (
    CleanCaption,
    CleaningConfig,
    build_cleaner,
    cut_loops,
    default_tokenizer_path,
    is_refusal,
    normalize,
    strip_openings,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The image shows a woman in a red coat.", "A woman in a red coat."),
        ("In this image, we can see a man smiling.", "A man smiling."),
        ("In the photo there is a child.", "A child."),
        ("This photograph captures two friends.", "Two friends."),
        ("The image is a close-up of a face.", "A close-up of a face."),
        ("Here is a detailed description of the image: The photo depicts a nurse.", "A nurse."),
        ("Caption: an old man.", "An old man."),
        ("A woman. The image shows nothing else.", "A woman. The image shows nothing else."),
    ],
)
def test_strip_openings(raw: str, expected: str) -> None:
    assert strip_openings(raw) == expected


def test_normalize_undoes_markdown_and_whitespace() -> None:
    raw = '  "**Subject:** a woman\n\n- long  brown hair\n- glasses\t and a hat "  '
    assert normalize(raw) == "Subject: a woman long brown hair glasses and a hat"


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("I'm sorry, but I can't help with identifying people in images.", True),
        ("I cannot describe this image.", True),
        ("Hmm. I can't identify the person.", True),
        ("Sorry, I am unable to process that.", True),
        ("As an AI, I do not see images.", True),
        ("Unfortunately the image is too small.", True),
        ("A woman who looks sorry, holding a sign saying I can't help it.", False),
        ("A man in a suit smiles at the camera.", False),
    ],
)
def test_refusals(text: str, refused: bool) -> None:
    assert is_refusal(text) is refused


def test_loops_are_cut_after_the_first_copy() -> None:
    text = "A child wearing a red hat, a red hat, a red hat, a red hat, a red hat, a red"
    assert cut_loops(text) == ("A child wearing a red hat.", True)
    assert cut_loops("She smiles. She wears a hat. She smiles.") == (
        "She smiles. She wears a hat.",
        True,
    )
    # Emphasis is not a loop; six one-word repeats are.
    assert cut_loops("A very very very happy man.") == ("A very very very happy man.", False)
    assert cut_loops("Hat hat hat hat hat hat hat") == ("Hat.", True)


def test_clean_combines_every_rule() -> None:
    cleaner = build_cleaner(CleaningConfig())
    raw = "The image shows  a woman with glasses. She smiles. She smiles. She smiles."
    assert cleaner.clean(raw) == CleanCaption(
        text="A woman with glasses. She smiles.",
        words=6,
        tokens=10,
        refusal=False,
        truncated=False,
        repetition=True,
    )
    refused = cleaner.clean("I'm sorry, I can't help with that.")
    assert (refused.refusal, refused.truncated, refused.repetition) == (True, False, False)


def test_word_limit_prefers_a_sentence_end() -> None:
    cleaner = build_cleaner(CleaningConfig(max_words=12, short_max_words=5))
    raw = "A woman stands in a sunny green park. She has long brown hair and smiles."
    long = cleaner.clean(raw)
    assert (long.text, long.words, long.truncated) == (
        "A woman stands in a sunny green park.",
        8,
        True,
    )
    # A sentence end in the first half only: cut at the last word, dropping a dangling "and".
    raw = "A woman stands in a park. She has long brown hair and smiles at the camera."
    assert cleaner.clean(raw).text == "A woman stands in a park. She has long brown hair."
    # No sentence end in the first half: cut at a word, never on an article.
    short = cleaner.clean("A woman with long brown hair and a hat.", short=True)
    assert (short.text, short.words, short.truncated) == ("A woman with long brown.", 5, True)


def test_token_limit_of_the_text_encoder() -> None:
    cleaner = build_cleaner(CleaningConfig(max_tokens=12))
    # all-MiniLM-L6-v2 splits the long word into word pieces; [CLS] and [SEP] count too.
    clean = cleaner.clean("A woman with supercalifragilistic hair stands in a park, smiling.")
    assert clean == CleanCaption("A woman with supercalifragilistic.", 4, 12, False, True, False)
    assert cleaner.count_tokens(clean.text) <= 12


def test_default_token_limit_is_the_encoders_max_seq_length() -> None:
    cleaner = build_cleaner(CleaningConfig())
    assert cleaner.max_tokens == 256  # sentence_bert_config.json of all-MiniLM-L6-v2
    assert (default_tokenizer_path() / "vocab.txt").is_file()
    long = " ".join(["a woman smiling at the camera"] * 10 + ["in a park"] * 80)
    clean = build_cleaner(CleaningConfig(max_words=1000, loop_max_words=1)).clean(long)
    assert clean.truncated and clean.tokens <= 256


def test_missing_tokenizer_directory_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=str(tmp_path / "nope")):
        build_cleaner(CleaningConfig(tokenizer_path=tmp_path / "nope"))
