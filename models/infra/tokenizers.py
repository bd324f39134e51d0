"""Token counters for the submit path: a model's own CLIP tokenizer where one is at hand.

The API caps a prompt's 75-token chunks and prices them in the dry run
(models/domain/limits.py). SDXL's two tokenizers share CLIP's vocabulary, so the first
one counts for both. Where it is found:

- a diffusers folder (``tokenizer/`` inside it), including the tiny test model once a
  worker or a test has built it in ``FARM_MODEL_CACHE_DIR``;
- a Hub model's ``tokenizer/`` files in the Hugging Face cache (a worker that loaded the
  model put them there); the API never downloads weights;
- otherwise (a single-file checkpoint, ``simulated``, a cold cache) the chunk count is
  ``EstimatedTokens``' estimate, which errs long. The worker never re-checks the cap.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from models.domain.model_sources import ModelSource, parse_model_source
from models.domain.prompt_chunks import EstimatedTokens, TokenCounter

log = logging.getLogger(__name__)


class ClipTokenCounter:
    """A ``TokenCounter`` over a transformers CLIP tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.comma: int | None = tokenizer.get_vocab().get(",</w>")

    def token_ids(self, runs: Sequence[str]) -> list[list[int]]:
        # verbose=False: no "longer than the maximum sequence length" warning; we chunk.
        ids: list[list[int]] = self.tokenizer(
            list(runs), truncation=False, add_special_tokens=False, verbose=False
        )["input_ids"]
        return ids


def _tokenizer_folder(source: ModelSource, cache_dir: Path) -> Path | None:
    if source.kind == "tiny":
        folder = cache_dir / "tiny-sdxl" / "tokenizer"
    elif source.kind == "folder":
        folder = Path(source.location).expanduser() / "tokenizer"
    elif source.kind == "hub":
        from huggingface_hub import try_to_load_from_cache

        repo_id, _, revision = source.location.partition("@")
        found = try_to_load_from_cache(
            repo_id, "tokenizer/vocab.json", cache_dir=cache_dir, revision=revision or None
        )
        return Path(found).parent if isinstance(found, str) else None
    else:
        return None
    return folder if (folder / "vocab.json").is_file() else None


def load_token_counter(source: str, cache_dir: Path) -> TokenCounter:
    """The model's own tokenizer when its files are here, else the estimate."""
    try:
        folder = _tokenizer_folder(parse_model_source(source), cache_dir)
        if folder is not None:
            from transformers import CLIPTokenizer

            return ClipTokenCounter(CLIPTokenizer.from_pretrained(folder))
    except Exception:  # a broken folder must not stop submissions: estimate instead
        log.exception("cannot load the tokenizer of %s; chunk counts are estimated", source)
    return EstimatedTokens()


class TokenCounters:
    """A token counter per enabled model, loaded on first use and kept."""

    def __init__(self, models: Mapping[str, str], cache_dir: Path) -> None:
        self.models = dict(models)
        self.cache_dir = cache_dir
        self._counters: dict[str, TokenCounter] = {}
        self._lock = threading.Lock()

    def __call__(self, model: str) -> TokenCounter:
        with self._lock:
            counter = self._counters.get(model)
            if counter is None:
                source = self.models.get(model)
                counter = (
                    EstimatedTokens()
                    if source is None
                    else load_token_counter(source, self.cache_dir)
                )
                # An estimate is not kept: the model's files may appear (a worker warms
                # the cache), and the next submission then counts exactly.
                if not isinstance(counter, EstimatedTokens):
                    self._counters[model] = counter
            return counter
