"""A1111-style prompt chunking with the tiny SDXL pipeline's real CLIP tokenizer.

The chunking is checked three ways: hand-worked examples, the boundaries of comma
backtracking, and a line-by-line transcription of A1111's ``tokenize_line`` run on
random prompts. The embeddings are in test_prompt_encoding_embeddings.py.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from models.domain.prompt_chunks import CHUNK_LENGTH, PromptChunk
from models.domain.prompt_syntax import parse_prompt_attention
from worker.prompt_encoding import (
    tokenize_chunks,
)
from worker.tiny_sdxl import build_tokenizers

TOKENS = 77
TAGS = ["long hair", "blue eyes", "smile", "solo", "school uniform", "red eyes", "blush"]
# About 200 tokens of Danbooru tags (checked in the test that uses it).
LONG_PROMPT = ", ".join(TAGS[i % len(TAGS)] for i in range(72)) + ", cherry blossoms"


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tokenizers()[0]


def words(chunk: PromptChunk, tokenizer: Any) -> list[str]:
    """The chunk's text tokens, without start, end and padding."""
    tokens = tokenizer.convert_ids_to_tokens(list(chunk.tokens[1:-1]))
    return [t.removesuffix("</w>") for t in tokens if t != tokenizer.eos_token]


# --- chunking ---------------------------------------------------------------------------


def test_a_short_prompt_is_one_chunk_of_77(tokenizer: Any) -> None:
    [chunk] = tokenize_chunks("1girl, (smile:1.5), [blush]", tokenizer)
    assert len(chunk.tokens) == len(chunk.multipliers) == TOKENS
    assert chunk.tokens[0] == tokenizer.bos_token_id
    assert chunk.tokens[-1] == tokenizer.eos_token_id
    assert words(chunk, tokenizer) == ["1", "girl", ",", "smile", ",", "blush"]
    assert chunk.multipliers[:8] == (1.0, 1.0, 1.0, 1.0, 1.5, 1.0, 1 / 1.1, 1.0)
    assert set(chunk.multipliers[8:]) == {1.0}


def test_an_empty_prompt_is_one_empty_chunk(tokenizer: Any) -> None:
    [chunk] = tokenize_chunks("", tokenizer)
    assert chunk.tokens == (tokenizer.bos_token_id, *[tokenizer.eos_token_id] * 76)


def test_a_200_token_prompt_is_three_chunks(tokenizer: Any) -> None:
    count = len(tokenizer(LONG_PROMPT, add_special_tokens=False).input_ids)
    assert 190 <= count <= 210
    chunks = tokenize_chunks(LONG_PROMPT, tokenizer)
    assert len(chunks) == 3
    assert all(len(c.tokens) == TOKENS for c in chunks)
    # Nothing is lost: the chunks hold every token, in order.
    assert sum(len(words(c, tokenizer)) for c in chunks) == count


def test_break_starts_a_new_chunk(tokenizer: Any) -> None:
    first, second = tokenize_chunks("1girl, solo BREAK smile", tokenizer)
    assert words(first, tokenizer) == ["1", "girl", ",", "solo"]
    assert words(second, tokenizer) == ["smile"]
    # Inside brackets BREAK is only a word (A1111 tests weight == -1).
    [chunk] = tokenize_chunks("(solo BREAK smile)", tokenizer)
    assert "k" in words(chunk, tokenizer)
    # A trailing BREAK adds no empty chunk; a leading one does (as in A1111).
    assert len(tokenize_chunks("solo BREAK", tokenizer)) == 1
    assert len(tokenize_chunks("BREAK solo", tokenizer)) == 2


def test_comma_backtracking_moves_the_last_tag_to_the_next_chunk(tokenizer: Any) -> None:
    # 70 tokens of "blue", then ", long hair, red eyes, smile": the chunk fills up at
    # "red"; the last comma is 2 tokens back, so "red" moves on with "eyes".
    prompt = "blue " * 70 + ", long hair, red eyes, smile"
    first, second = tokenize_chunks(prompt, tokenizer)
    assert words(first, tokenizer)[-4:] == [",", "long", "hair", ","]
    assert len(words(first, tokenizer)) == 74  # one end token of padding before the end
    assert words(second, tokenizer) == ["red", "eyes", ",", "smile"]


@pytest.mark.parametrize(("before", "moved"), [(55, True), (54, False)])
def test_comma_backtracking_reaches_back_20_tokens(
    tokenizer: Any, before: int, moved: bool
) -> None:
    # A comma after `before` tokens, then enough tokens to fill the chunk and more.
    after = CHUNK_LENGTH - before - 1
    prompt = "blue " * before + ", " + "red " * after + "smile"
    first, second = tokenize_chunks(prompt, tokenizer)
    if moved:  # 20 tokens back: the text after the comma moves
        assert words(first, tokenizer) == ["blue"] * before + [","]
        assert words(second, tokenizer) == ["red"] * after + ["smile"]
    else:  # 21 tokens back: too far, the chunk is cut where it is full
        assert words(first, tokenizer) == ["blue"] * before + [","] + ["red"] * after
        assert words(second, tokenizer) == ["smile"]


def _a1111_tokenize_line(line: str, tokenizer: Any) -> list[tuple[list[int], list[float]]]:
    """A transcription of A1111's ``tokenize_line`` (no textual inversion), kept close to
    the original's structure on purpose: the oracle for ``tokenize_chunks``."""
    parsed = parse_prompt_attention(line)
    tokenized = tokenizer([t for t, _ in parsed], truncation=False, add_special_tokens=False)
    tokenized = tokenized["input_ids"]
    id_start, id_end = tokenizer.bos_token_id, tokenizer.eos_token_id
    comma_token = tokenizer.get_vocab().get(",</w>", None)
    chunk_length, backtrack = 75, 20
    chunks: list[tuple[list[int], list[float]]] = []
    chunk: tuple[list[int], list[float]] = ([], [])
    last_comma = -1

    def next_chunk() -> None:
        nonlocal last_comma, chunk
        tokens, multipliers = chunk
        to_add = chunk_length - len(tokens)
        if to_add > 0:
            tokens += [id_end] * to_add
            multipliers += [1.0] * to_add
        chunks.append(([id_start, *tokens, id_end], [1.0, *multipliers, 1.0]))
        last_comma = -1
        chunk = ([], [])

    for tokens, (text, weight) in zip(tokenized, parsed, strict=True):
        if text == "BREAK" and weight == -1:
            next_chunk()
            continue
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token == comma_token:
                last_comma = len(chunk[0])
            elif (
                len(chunk[0]) == chunk_length
                and last_comma != -1
                and len(chunk[0]) - last_comma <= backtrack
            ):
                break_location = last_comma + 1
                reloc = chunk[0][break_location:], chunk[1][break_location:]
                chunk = chunk[0][:break_location], chunk[1][:break_location]
                next_chunk()
                chunk = reloc
            if len(chunk[0]) == chunk_length:
                next_chunk()
            chunk[0].append(token)
            chunk[1].append(weight)
            position += 1
    if chunk[0] or not chunks:
        next_chunk()
    return chunks


def _random_prompt(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 90)):
        tag = " ".join(rng.choice(TAGS).split() * rng.choice([1, 1, 1, 4, 12]))
        roll = rng.random()
        if roll < 0.15:
            tag = f"({tag}:{rng.choice(['0.5', '1.2', '1.5'])})"
        elif roll < 0.25:
            tag = f"[{tag}]"
        elif roll < 0.3:
            tag = f"(({tag}))"
        elif roll < 0.35:
            tag = "BREAK " + tag
        parts.append(tag)
    return rng.choice([", ", ",", " "]).join(parts)


def test_chunks_match_a1111s_algorithm_on_random_prompts(tokenizer: Any) -> None:
    rng = random.Random(1111)
    sizes = set()
    for _ in range(300):
        prompt = _random_prompt(rng)
        ours = [(list(c.tokens), list(c.multipliers)) for c in tokenize_chunks(prompt, tokenizer)]
        assert ours == _a1111_tokenize_line(prompt, tokenizer), prompt
        sizes.add(len(ours))
    assert {1, 2, 3, 4} <= sizes  # the sample covers short and long prompts
