"""A1111's 75-token chunks: how a prompt's tokens fill them (no torch, no tokenizer of its own).

The worker encodes each chunk (worker/prompt_encoding.py); the submit path counts them
to cap a prompt's length and to price it in the dry run (models/domain/limits.py). Both
fill chunks with the same ``ChunkBuilder``, A1111's ``tokenize_line`` loop:

- tokens fill chunks of 75; ``BREAK`` closes the current chunk;
- when a chunk is full and the last comma is at most 20 tokens back
  (``comma_padding_backtrack``), the tokens after that comma move to the next chunk,
  so a tag is not cut in half.

A ``TokenCounter`` turns text runs into token ids: a real CLIP tokenizer where one is
at hand (models/infra/tokenizers.py), else ``EstimatedTokens``, a linear-time estimate
that errs long for Danbooru tags (so a cap on it never lets a longer prompt through).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from models.domain.prompt_syntax import is_break, parse_prompt_attention

CHUNK_LENGTH: Final = 75  # tokens of text per chunk; with start and end: 77
COMMA_PADDING_BACKTRACK: Final = 20  # A1111's default


@dataclass(frozen=True)
class PromptChunk:
    """One 77-token window: token ids (before padding) and their weights."""

    tokens: tuple[int, ...]
    multipliers: tuple[float, ...]


class ChunkBuilder:
    """A1111's ``tokenize_line`` loop: fills chunks, honours BREAK and comma backtracking."""

    def __init__(self, *, start: int, end: int, comma: int | None) -> None:
        self.start, self.end, self.comma = start, end, comma
        self.chunks: list[PromptChunk] = []
        self.tokens: list[int] = []
        self.multipliers: list[float] = []
        self.last_comma = -1

    def close(self) -> None:
        pad = CHUNK_LENGTH - len(self.tokens)
        self.chunks.append(
            PromptChunk(
                tokens=(self.start, *self.tokens, *[self.end] * pad, self.end),
                multipliers=(1.0, *self.multipliers, *[1.0] * pad, 1.0),
            )
        )
        self.tokens, self.multipliers, self.last_comma = [], [], -1

    def add(self, token: int, weight: float) -> None:
        if token == self.comma:
            self.last_comma = len(self.tokens)
        elif (
            len(self.tokens) == CHUNK_LENGTH
            and self.last_comma != -1
            and len(self.tokens) - self.last_comma <= COMMA_PADDING_BACKTRACK
        ):
            # Full, and a comma is near: the text after it moves to the next chunk.
            cut = self.last_comma + 1
            moved, moved_weights = self.tokens[cut:], self.multipliers[cut:]
            self.tokens, self.multipliers = self.tokens[:cut], self.multipliers[:cut]
            self.close()
            self.tokens, self.multipliers = moved, moved_weights
        if len(self.tokens) == CHUNK_LENGTH:
            self.close()
        self.tokens.append(token)
        self.multipliers.append(weight)

    def finish(self) -> list[PromptChunk]:
        if self.tokens or not self.chunks:
            self.close()
        return self.chunks


class TokenCounter(Protocol):
    """Token ids of text runs (no start or end tokens), and which id is a comma."""

    @property
    def comma(self) -> int | None: ...

    def token_ids(self, runs: Sequence[str]) -> list[list[int]]: ...


def count_chunks(text: str, counter: TokenCounter) -> int:
    """How many 77-token chunks ``text`` takes (at least one; the empty text is one)."""
    runs = parse_prompt_attention(text)
    builder = ChunkBuilder(start=-1, end=-1, comma=counter.comma)
    for tokens, (run, weight) in zip(counter.token_ids([r for r, _ in runs]), runs, strict=True):
        if is_break(run, weight):
            builder.close()
            continue
        for token in tokens:
            builder.add(token, weight)
    return len(builder.finish())


# CLIP's pre-tokenizer splits text into letter runs, single digits and runs of other
# symbols; each piece is then BPE-merged into one token or more. Python's re has no
# \p{L}: "[^\W\d_]" is a letter. Each alternative is a simple class: linear time.
_PIECES: Final = re.compile(r"[^\W\d_]+|\d|[^\s\w]+|_+")
_ESTIMATED_COMMA: Final = 1
_OTHER: Final = 0


class EstimatedTokens:
    """A token count without a vocabulary, for models whose tokenizer is not at hand.

    A word of n letters counts as ``1 + (n - 1) // 6`` tokens (CLIP's vocabulary holds
    most English words and Danbooru tags whole: "masterpiece" is one token and counts
    two here), each digit as one, each other symbol as one (a comma is the comma).
    """

    comma: int | None = _ESTIMATED_COMMA

    def token_ids(self, runs: Sequence[str]) -> list[list[int]]:
        return [self._ids(run) for run in runs]

    @staticmethod
    def _ids(run: str) -> list[int]:
        ids: list[int] = []
        for piece in _PIECES.findall(run.lower()):
            if piece[0].isalpha():
                ids.extend([_OTHER] * (1 + (len(piece) - 1) // 6))
            elif piece[0].isdigit():
                ids.append(_OTHER)
            else:
                ids.extend(_ESTIMATED_COMMA if ch == "," else _OTHER for ch in piece)
        return ids
