"""A1111-style prompt encoding for SDXL's two text encoders: weights, long prompts, BREAK.

What AUTOMATIC1111 does (``modules/sd_hijack_clip.py``, ``modules/sd_emphasis.py``),
on diffusers' components:

1. The prompt is parsed into ``(text, weight)`` runs (``models.domain.prompt_syntax``).
2. Each run is tokenized without start/end tokens, and the tokens fill chunks of 75
   (``models.domain.prompt_chunks``: BREAK, comma backtracking; the submit path counts
   chunks with the same code).
3. A chunk is ``[start] + 75 tokens (padded with end) + [end]``; after its first end
   token, each tokenizer's own pad token follows (SDXL's second tokenizer pads with
   ``!``), exactly as the tokenizers pad for diffusers.
4. Each chunk goes through each text encoder on its own; the penultimate hidden
   states are kept. Emphasis is applied per chunk and per encoder: ``z = z * w``,
   then, in the default "original" mode, ``z = z * (mean(z_before) / mean(z_after))``;
   "no_norm" skips the mean restoration.
5. The encoders' outputs are concatenated on the feature axis (te1 then te2), the
   chunks on the token axis. The pooled embedding is te2's projected output for the
   first chunk (unweighted, as in A1111).

A prompt without syntax and within 75 tokens gives exactly diffusers' ``encode_prompt``
embeddings. An empty negative prompt is zeros when the pipeline's
``force_zeros_for_empty_prompt`` is set (diffusers' "no negative prompt"; A1111 also
zeros an empty negative for SDXL).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from models.domain.prompt_chunks import CHUNK_LENGTH, ChunkBuilder, PromptChunk
from models.domain.prompt_syntax import is_break, parse_prompt_attention

if TYPE_CHECKING:
    import torch

EMPHASIS_MODES: Final = ("original", "no_norm")


def tokenize_chunks(text: str, tokenizer: Any) -> list[PromptChunk]:
    """The prompt's chunks for one tokenizer; at least one (an empty prompt is one)."""
    runs = parse_prompt_attention(text)
    # verbose=False: no "longer than the maximum sequence length" warning; we chunk.
    ids = tokenizer(
        [run for run, _ in runs], truncation=False, add_special_tokens=False, verbose=False
    )
    builder = ChunkBuilder(
        start=tokenizer.bos_token_id,
        end=tokenizer.eos_token_id,
        comma=tokenizer.get_vocab().get(",</w>"),
    )
    for tokens, (run, weight) in zip(ids["input_ids"], runs, strict=True):
        if is_break(run, weight):
            builder.close()
            continue
        for token in tokens:
            builder.add(token, weight)
    return builder.finish()


def padded_ids(chunk: PromptChunk, *, end: int, pad: int) -> list[int]:
    """The ids an encoder sees: the pad token after the first end token."""
    ids = list(chunk.tokens)
    first_end = ids.index(end, 1)
    return ids[: first_end + 1] + [pad] * (len(ids) - first_end - 1)


def apply_emphasis(z: torch.Tensor, multipliers: torch.Tensor, mode: str) -> torch.Tensor:
    """Weight one chunk's hidden states ``z`` (1, 77, C) by token (A1111's emphasis)."""
    if mode not in EMPHASIS_MODES:
        raise ValueError(f"unknown emphasis {mode!r}; valid: {', '.join(EMPHASIS_MODES)}")
    weighted = z.float() * multipliers.reshape(1, -1, 1).float()
    if mode == "original":
        weighted = weighted * (z.float().mean() / weighted.mean())
    return weighted.to(z.dtype)


@dataclass(frozen=True)
class EncodedPrompt:
    """One prompt's embeddings: ``embeds`` (chunks × 77, te1 + te2 features), ``pooled``."""

    embeds: torch.Tensor
    pooled: torch.Tensor
    zero: bool = False  # diffusers' zeroed empty negative: zeros at any length

    @property
    def chunks(self) -> int:
        return int(self.embeds.shape[0]) // (CHUNK_LENGTH + 2)


@dataclass(frozen=True)
class BatchEmbeddings:
    """What the SDXL pipelines take instead of prompt strings."""

    prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor
    negative_prompt_embeds: torch.Tensor
    negative_pooled_prompt_embeds: torch.Tensor

    def as_kwargs(self) -> dict[str, torch.Tensor]:
        return {
            "prompt_embeds": self.prompt_embeds,
            "pooled_prompt_embeds": self.pooled_prompt_embeds,
            "negative_prompt_embeds": self.negative_prompt_embeds,
            "negative_pooled_prompt_embeds": self.negative_pooled_prompt_embeds,
        }


class PromptEncoder:
    """Encodes prompts with a pipeline's tokenizers and text encoders, A1111's way."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe  # its modules are read at each use: GPU options may swap them
        if not self.encoders:
            raise ValueError("the pipeline has no text encoder")
        self.force_zeros = bool(pipe.config.get("force_zeros_for_empty_prompt", False))
        self._empty: EncodedPrompt | None = None

    def forget(self) -> None:
        """Drop what was encoded: the text encoders changed (another LoRA set)."""
        self._empty = None

    @property
    def encoders(self) -> list[tuple[Any, Any]]:
        """(tokenizer, text encoder) pairs, te1 first, as diffusers uses them."""
        pipe = self.pipe
        pairs = ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2))
        return [(tokenizer, encoder) for tokenizer, encoder in pairs if encoder is not None]

    @property
    def dtype(self) -> Any:
        """Like diffusers: embeddings in te2's dtype (the UNet's without te2)."""
        last = self.pipe.text_encoder_2 if self.pipe.text_encoder_2 is not None else self.pipe.unet
        return last.dtype

    def encode(self, text: str, *, emphasis: str = "original") -> EncodedPrompt:
        import torch

        with torch.inference_mode():  # never an autograd graph, whoever calls
            return self._encode(text, emphasis)

    def _encode(self, text: str, emphasis: str) -> EncodedPrompt:
        import torch

        encoders = self.encoders
        per_encoder = [tokenize_chunks(text, tokenizer) for tokenizer, _ in encoders]
        count = max(len(chunks) for chunks in per_encoder)
        hidden: list[list[torch.Tensor]] = []  # [encoder][chunk] -> (1, 77, C)
        pooled: torch.Tensor | None = None
        for (tokenizer, encoder), chunks in zip(encoders, per_encoder, strict=True):
            chunks = chunks + [_empty_chunk(tokenizer)] * (count - len(chunks))
            states = []
            for chunk in chunks:
                state, chunk_pooled = _encode_chunk(tokenizer, encoder, chunk, emphasis)
                states.append(state)
                if pooled is None:  # the first chunk of the encoder that pools (te2)
                    pooled = chunk_pooled
            hidden.append(states)
        if pooled is None:
            raise ValueError("no text encoder gives a pooled (projected) output")
        per_chunk = [torch.cat([states[i] for states in hidden], dim=-1) for i in range(count)]
        embeds = torch.cat(per_chunk, dim=1)[0].to(self.dtype)
        return EncodedPrompt(embeds=embeds, pooled=pooled.to(self.dtype))

    def encode_negative(self, text: str, *, emphasis: str = "original") -> EncodedPrompt:
        """Like ``encode``; the empty text is zeros where the pipeline asks for that."""
        if text == "" and self.force_zeros:
            empty = self.empty()
            return EncodedPrompt(
                embeds=empty.embeds.new_zeros(empty.embeds.shape),
                pooled=empty.pooled.new_zeros(empty.pooled.shape),
                zero=True,
            )
        return self.encode(text, emphasis=emphasis)

    def empty(self) -> EncodedPrompt:
        """The empty prompt: what shorter prompts are padded with (A1111's empty chunk)."""
        if self._empty is None:
            self._empty = self.encode("")
        return self._empty

    def padded(self, prompt: EncodedPrompt, chunks: int) -> torch.Tensor:
        """``prompt``'s embeddings extended with empty chunks to ``chunks`` chunks."""
        import torch

        missing = chunks - prompt.chunks
        if missing < 0:
            raise ValueError(f"a prompt of {prompt.chunks} chunks cannot pad to {chunks}")
        if missing == 0:
            return prompt.embeds
        if prompt.zero:
            return prompt.embeds.new_zeros((chunks * (CHUNK_LENGTH + 2), prompt.embeds.shape[1]))
        return torch.cat([prompt.embeds, self.empty().embeds.repeat(missing, 1)], dim=0)

    def batch(
        self,
        prompts: list[str],
        negatives: list[str],
        encoded: dict[str, EncodedPrompt],
        negative_encoded: dict[str, EncodedPrompt],
    ) -> BatchEmbeddings:
        """Stack a batch, every prompt and negative padded to the longest of them."""
        import torch

        positives = [encoded[p] for p in prompts]
        negs = [negative_encoded[n] for n in negatives]
        chunks = max(e.chunks for e in [*positives, *negs])
        return BatchEmbeddings(
            prompt_embeds=torch.stack([self.padded(e, chunks) for e in positives]),
            pooled_prompt_embeds=torch.stack([e.pooled for e in positives]),
            negative_prompt_embeds=torch.stack([self.padded(e, chunks) for e in negs]),
            negative_pooled_prompt_embeds=torch.stack([e.pooled for e in negs]),
        )


def _encode_chunk(
    tokenizer: Any, encoder: Any, chunk: PromptChunk, emphasis: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Penultimate hidden states (1, 77, C), weighted; and the pooled output, if any."""
    import torch

    ids = padded_ids(chunk, end=tokenizer.eos_token_id, pad=tokenizer.pad_token_id)
    output = encoder(torch.tensor([ids], device=encoder.device), output_hidden_states=True)
    # Like diffusers: the pooled embedding is the 2-D first output (te2's text_embeds).
    pooled = output[0][0] if output[0].ndim == 2 else None
    weights = torch.tensor(chunk.multipliers, device=encoder.device)
    return apply_emphasis(output.hidden_states[-2], weights, emphasis), pooled


def _empty_chunk(tokenizer: Any) -> PromptChunk:
    end = tokenizer.eos_token_id
    return PromptChunk(
        tokens=(tokenizer.bos_token_id, *[end] * (CHUNK_LENGTH + 1)),
        multipliers=(1.0,) * (CHUNK_LENGTH + 2),
    )


def encode_distinct(
    encoder: PromptEncoder, texts: Iterable[str], *, emphasis: str, negative: bool = False
) -> dict[str, EncodedPrompt]:
    """Each distinct text encoded once (a shard repeats its negative in every cell)."""
    encode = encoder.encode_negative if negative else encoder.encode
    return {text: encode(text, emphasis=emphasis) for text in dict.fromkeys(texts)}
