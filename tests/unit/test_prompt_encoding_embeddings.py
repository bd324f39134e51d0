"""A1111-style prompt embeddings on the tiny SDXL pipeline: a plain short prompt encodes
exactly as diffusers' own ``encode_prompt``, long and BREAK prompts are chunks on the token
axis, emphasis is A1111's formula, and a batch pads prompts and negatives to the same chunks."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from diffusers import StableDiffusionXLPipeline

from tests.unit.test_prompt_encoding import LONG_PROMPT, TOKENS
from worker.prompt_encoding import PromptEncoder, apply_emphasis, padded_ids, tokenize_chunks
from worker.tiny_sdxl import build_tiny_sdxl


@pytest.fixture(scope="module")
def pipe() -> StableDiffusionXLPipeline:
    return build_tiny_sdxl()


@pytest.fixture(scope="module")
def encoder(pipe: StableDiffusionXLPipeline) -> PromptEncoder:
    return PromptEncoder(pipe)


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
