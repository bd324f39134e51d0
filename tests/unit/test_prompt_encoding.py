"""A1111-style prompt encoding on the tiny SDXL pipeline (real CLIP tokenizers and encoders).

The chunking is checked three ways: hand-worked examples, the boundaries of comma
backtracking, and a line-by-line transcription of A1111's ``tokenize_line`` run on
random prompts. The embeddings are checked against diffusers' own ``encode_prompt``.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch
from diffusers import StableDiffusionXLPipeline

from models.domain.prompt_chunks import CHUNK_LENGTH, PromptChunk
from models.domain.prompt_syntax import parse_prompt_attention
from worker.prompt_encoding import (
    PromptEncoder,
    apply_emphasis,
    padded_ids,
    tokenize_chunks,
)
from worker.tiny_sdxl import build_tiny_sdxl, build_tokenizers

TOKENS = 77
TAGS = ["long hair", "blue eyes", "smile", "solo", "school uniform", "red eyes", "blush"]
# About 200 tokens of Danbooru tags (checked in the test that uses it).
LONG_PROMPT = ", ".join(TAGS[i % len(TAGS)] for i in range(72)) + ", cherry blossoms"


@pytest.fixture(scope="module")
def pipe() -> StableDiffusionXLPipeline:
    return build_tiny_sdxl()


@pytest.fixture(scope="module")
def encoder(pipe: StableDiffusionXLPipeline) -> PromptEncoder:
    return PromptEncoder(pipe)


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


def test_the_second_tokenizer_pads_with_exclamation_marks(pipe: StableDiffusionXLPipeline) -> None:
    [chunk] = tokenize_chunks("solo", pipe.tokenizer_2)
    ids = padded_ids(chunk, end=pipe.tokenizer_2.eos_token_id, pad=pipe.tokenizer_2.pad_token_id)
    bang = pipe.tokenizer_2.convert_tokens_to_ids("!")
    assert ids[0] == pipe.tokenizer_2.bos_token_id
    assert ids[2] == pipe.tokenizer_2.eos_token_id  # "solo" is one token
    assert ids[3:] == [bang] * 74
    assert padded_ids(chunk, end=ids[2], pad=ids[2]) == list(chunk.tokens)  # te1: end pads
    # ... exactly as diffusers tokenizes for the second encoder.
    expected = pipe.tokenizer_2("solo", padding="max_length", max_length=77).input_ids
    assert ids == expected


# --- emphasis ---------------------------------------------------------------------------


def test_emphasis_is_a1111s_formula() -> None:
    torch.manual_seed(0)
    z = torch.randn(1, 77, 16)
    weights = torch.ones(77)
    weights[3:6] = 1.5
    weights[10] = 0.8
    # A1111's EmphasisOriginal.after_transformers, verbatim:
    original_mean = z.mean()
    expected = z * weights.reshape((*weights.shape, 1)).expand(z.shape)
    expected = expected * (original_mean / expected.mean())
    assert torch.allclose(apply_emphasis(z, weights, "original"), expected, rtol=0, atol=1e-7)
    no_norm = z * weights.reshape(1, 77, 1)
    assert torch.equal(apply_emphasis(z, weights, "no_norm"), no_norm)
    assert torch.allclose(apply_emphasis(z, weights, "original").mean(), z.mean(), atol=1e-7)
    with pytest.raises(ValueError, match="no_norm"):
        apply_emphasis(z, weights, "none")


# --- embeddings -------------------------------------------------------------------------


def _diffusers(
    pipe: StableDiffusionXLPipeline, prompt: str, negative: str | None
) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode():
        out: tuple[torch.Tensor, ...] = pipe.encode_prompt(
            prompt, negative_prompt=negative, device="cpu", do_classifier_free_guidance=True
        )
    return out


def _ours(encoder: PromptEncoder, text: str, *, negative: bool = False) -> Any:
    with torch.inference_mode():
        return encoder.encode_negative(text) if negative else encoder.encode(text)


@pytest.mark.parametrize(
    ("prompt", "negative"),
    [
        ("1girl, solo, long hair", "lowres, bad anatomy"),
        ("masterpiece, best quality, very aesthetic, absurdres, 1girl, école ★", "worst"),
        ("x" * 45 + " " + "blue " * 30, "text, error"),  # 75 tokens: one full chunk
    ],
)
def test_a_plain_short_prompt_is_exactly_diffusers(
    pipe: StableDiffusionXLPipeline, encoder: PromptEncoder, prompt: str, negative: str
) -> None:
    assert len(pipe.tokenizer(prompt, add_special_tokens=False).input_ids) <= 75
    embeds, negative_embeds, pooled, negative_pooled = _diffusers(pipe, prompt, negative)
    ours, ours_negative = _ours(encoder, prompt), _ours(encoder, negative, negative=True)
    assert torch.equal(ours.embeds, embeds[0])
    assert torch.equal(ours.pooled, pooled[0])
    assert torch.equal(ours_negative.embeds, negative_embeds[0])
    assert torch.equal(ours_negative.pooled, negative_pooled[0])


def test_an_empty_negative_is_zeros_like_diffusers(
    pipe: StableDiffusionXLPipeline, encoder: PromptEncoder
) -> None:
    assert pipe.config.force_zeros_for_empty_prompt
    _, negative_embeds, _, negative_pooled = _diffusers(pipe, "1girl", None)
    zero = _ours(encoder, "", negative=True)
    assert zero.zero and not zero.embeds.any()
    assert torch.equal(zero.embeds, negative_embeds[0])
    assert torch.equal(zero.pooled, negative_pooled[0])
    # Padded to a long prompt, it stays zeros at every position (diffusers' zeros_like).
    assert not encoder.padded(zero, 3).any()
    assert encoder.padded(zero, 3).shape == (3 * TOKENS, zero.embeds.shape[1])


def test_without_force_zeros_an_empty_negative_is_encoded(pipe: StableDiffusionXLPipeline) -> None:
    plain = StableDiffusionXLPipeline(
        **pipe.components, force_zeros_for_empty_prompt=False, add_watermarker=False
    )
    _, negative_embeds, _, negative_pooled = _diffusers(plain, "1girl", "")
    empty = _ours(PromptEncoder(plain), "", negative=True)
    assert not empty.zero
    assert torch.equal(empty.embeds, negative_embeds[0])
    assert torch.equal(empty.pooled, negative_pooled[0])


def test_a_long_prompt_is_three_chunks_on_the_token_axis(encoder: PromptEncoder) -> None:
    encoded = _ours(encoder, LONG_PROMPT)
    assert encoded.chunks == 3
    assert encoded.embeds.shape == (3 * TOKENS, 32 + 64)  # te1 + te2 features
    start_states = encoded.embeds[::TOKENS]  # the start token of each chunk
    assert torch.equal(start_states[0], start_states[1])  # same token, same position
    assert not torch.equal(encoded.embeds[TOKENS + 1], encoded.embeds[2 * TOKENS + 1])
    # The tail changes only the last chunk.
    changed = _ours(encoder, LONG_PROMPT.replace("cherry blossoms", "cherry blossoms, blush"))
    assert torch.equal(changed.embeds[: 2 * TOKENS], encoded.embeds[: 2 * TOKENS])
    assert not torch.equal(changed.embeds[2 * TOKENS :], encoded.embeds[2 * TOKENS :])


def test_break_chunks_are_encoded_separately(encoder: PromptEncoder) -> None:
    both = _ours(encoder, "1girl, solo BREAK long hair, smile")
    first, second = _ours(encoder, "1girl, solo"), _ours(encoder, "long hair, smile")
    assert both.chunks == 2
    assert torch.equal(both.embeds[:TOKENS], first.embeds)
    assert torch.equal(both.embeds[TOKENS:], second.embeds)


def test_the_pooled_embedding_comes_from_the_first_chunk(encoder: PromptEncoder) -> None:
    both = _ours(encoder, "1girl, solo BREAK long hair, smile")
    assert torch.equal(both.pooled, _ours(encoder, "1girl, solo").pooled)
    assert not torch.equal(both.pooled, _ours(encoder, "long hair, smile").pooled)
    # Weights change the hidden states, never the pooled embedding (as in A1111).
    assert torch.equal(_ours(encoder, "(1girl:1.5), solo").pooled, both.pooled)


def test_a_weight_changes_its_tokens_and_original_keeps_the_mean(
    encoder: PromptEncoder,
) -> None:
    plain = _ours(encoder, "1girl, smile, solo")
    weighted = _ours(encoder, "1girl, (smile:1.5), solo")
    assert not torch.equal(plain.embeds, weighted.embeds)
    te1 = slice(0, 32)
    for features in (te1, slice(32, 96)):  # per encoder, the chunk's mean is restored
        assert torch.allclose(
            weighted.embeds[:, features].mean(), plain.embeds[:, features].mean(), atol=1e-6
        )


def test_no_norm_differs_from_original_only_for_weighted_prompts(
    encoder: PromptEncoder,
) -> None:
    with torch.inference_mode():
        weighted = [
            encoder.encode("1girl, (smile:1.5)", emphasis=m) for m in ("original", "no_norm")
        ]
        plain = [encoder.encode("1girl, smile", emphasis=m) for m in ("original", "no_norm")]
    assert not torch.equal(weighted[0].embeds, weighted[1].embeds)
    assert torch.equal(plain[0].embeds, plain[1].embeds)


def test_positive_and_negative_are_padded_to_the_same_chunks(encoder: PromptEncoder) -> None:
    with torch.inference_mode():
        encoded = {LONG_PROMPT: encoder.encode(LONG_PROMPT), "solo": encoder.encode("solo")}
        negatives = {"lowres": encoder.encode_negative("lowres")}
        batch = encoder.batch([LONG_PROMPT, "solo"], ["lowres", "lowres"], encoded, negatives)
    assert batch.prompt_embeds.shape == batch.negative_prompt_embeds.shape == (2, 231, 96)
    assert batch.pooled_prompt_embeds.shape == batch.negative_pooled_prompt_embeds.shape == (2, 32)
    empty = encoder.empty().embeds
    # The short ones are followed by empty chunks (A1111 pads with the empty prompt).
    assert torch.equal(batch.negative_prompt_embeds[0, TOKENS:], empty.repeat(2, 1))
    assert torch.equal(batch.prompt_embeds[1, :TOKENS], encoded["solo"].embeds)
    assert torch.equal(batch.prompt_embeds[1, TOKENS:], empty.repeat(2, 1))
    # A negative longer than the prompt pads the prompt.
    with torch.inference_mode():
        long_negative = {LONG_PROMPT: encoder.encode_negative(LONG_PROMPT)}
        batch = encoder.batch(["solo"], [LONG_PROMPT], encoded, long_negative)
    assert batch.prompt_embeds.shape == batch.negative_prompt_embeds.shape == (1, 231, 96)
