"""A tiny, randomly initialised SDXL pipeline built offline: tests and CPU smoke runs.

It has SDXL's shape (two CLIP text encoders, a text_time UNet, a VAE with scale factor
8, real byte-level BPE tokenizers) at a size that renders 1024² on a laptop CPU. The
weights are noise, so the pictures are too; what it exercises is the real code path.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    EulerAncestralDiscreteScheduler,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
)

# Bump when the architecture or the build recipe changes: it feeds model fingerprints.
TINY_SDXL_VERSION = "1"

# The scheduler config of SDXL base / Animagine XL 3.1 (Euler a as the default sampler).
SDXL_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
}

_BOS = "<|startoftext|>"
_EOS = "<|endoftext|>"
_MAX_LENGTH = 77
# Whole-word BPE merges for common Danbooru words, so tags tokenize into a mix of words
# and byte pieces like the real CLIP vocab; anything else falls back to single bytes.
_WORD_LIST = """
girl boy solo hair eyes long short blue red black white blonde brown pink purple green
smile looking at viewer masterpiece best quality very aesthetic absurdres highres lowres
worst bad anatomy hands text error missing fingers dress skirt school uniform outdoors
indoors sky day night open mouth blush bangs shirt holding standing sitting simple
background upper body full cowboy shot portrait from side above below bow ribbon jacket
hat flower cherry blossoms
"""
_WORDS = _WORD_LIST.split()

# Sizes. te1 and te2 hidden sizes must differ: single-file loading tells CLIP-L from
# OpenCLIP-G in a checkpoint by the embedding width.
_TE1_HIDDEN = 32
_TE2_HIDDEN = 64
_TE2_PROJECTION = 32
_TIME_EMBED_DIM = 8


def _byte_symbols() -> list[str]:
    """CLIP/GPT-2's printable stand-in for each of the 256 bytes, in CLIP's vocab order
    (printable bytes first, so "!" gets id 0 as in the real vocab)."""
    byte_values = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    byte_values += range(ord("®"), ord("ÿ") + 1)
    code_points = list(byte_values)
    unprintable_stand_ins = iter(range(256, 512))
    for b in range(256):
        if b not in byte_values:
            byte_values.append(b)
            code_points.append(next(unprintable_stand_ins))
    return [chr(c) for c in code_points]


def _vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    byte_chars = _byte_symbols()
    tokens = byte_chars + [c + "</w>" for c in byte_chars]
    merges: list[tuple[str, str]] = []
    seen = set(tokens)
    for word in _WORDS:
        pieces = [*word[:-1], word[-1] + "</w>"]
        left = pieces[0]
        for right in pieces[1:]:
            merged = left + right  # never a bare "</w>": the left side is a real prefix
            if merged not in seen:
                merges.append((left, right))
                tokens.append(merged)
                seen.add(merged)
            left = merged
    tokens += [_BOS, _EOS]
    return {token: i for i, token in enumerate(tokens)}, merges


def build_tokenizers() -> tuple[CLIPTokenizer, CLIPTokenizer]:
    """Two CLIP tokenizers on the same vocab; SDXL's second one pads with "!"."""
    vocab, merges = _vocab_and_merges()
    # Merges as (left, right) pairs: the BPE model rejects the "left right" strings of
    # merges.txt when given a list.
    first = CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        model_max_length=_MAX_LENGTH,
    )
    second = CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        pad_token="!",
        model_max_length=_MAX_LENGTH,
    )
    return first, second


def _text_config(vocab_size: int, hidden: int, projection: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,  # SDXL reads the penultimate layer
        num_attention_heads=4,
        max_position_embeddings=_MAX_LENGTH,
        hidden_act="gelu",
        projection_dim=projection,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )


def _unet() -> UNet2DConditionModel:
    # Four levels with attention only at the lowest (1/8 latent size, 16² tokens at
    # 1024²): attention at high latent resolution is what makes a tiny UNet slow.
    unet: UNet2DConditionModel = UNet2DConditionModel(
        sample_size=128,  # default render size 1024², like SDXL
        in_channels=4,
        out_channels=4,
        block_out_channels=(4, 4, 8, 8),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D",) * 3 + ("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",) + ("UpBlock2D",) * 3,
        attention_head_dim=1,  # diffusers' legacy name for the number of heads
        use_linear_projection=True,
        cross_attention_dim=_TE1_HIDDEN + _TE2_HIDDEN,
        addition_embed_type="text_time",
        addition_time_embed_dim=_TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=6 * _TIME_EMBED_DIM + _TE2_PROJECTION,
    )
    return unet


def _vae() -> AutoencoderKL:
    # Four levels: scale factor 8 like SDXL's VAE. Decoding at full resolution is the
    # cost, hence four channels and no mid-block attention.
    vae: AutoencoderKL = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(4, 4, 4, 4),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=1024,
        scaling_factor=0.13025,
        mid_block_add_attention=False,
    )
    return vae


def build_tiny_sdxl(seed: int = 0) -> StableDiffusionXLPipeline:
    """The same weights for the same seed and library versions, without touching the
    caller's global RNG state."""
    tokenizer, tokenizer_2 = build_tokenizers()
    vocab_size = len(tokenizer.get_vocab())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(_text_config(vocab_size, _TE1_HIDDEN, _TE1_HIDDEN))
        text_encoder_2 = CLIPTextModelWithProjection(
            _text_config(vocab_size, _TE2_HIDDEN, _TE2_PROJECTION)
        )
        unet = _unet()
        vae = _vae()
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=EulerAncestralDiscreteScheduler.from_config(SDXL_SCHEDULER_CONFIG),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def ensure_tiny_sdxl(folder: Path) -> Path:
    """Save a tiny pipeline to `folder` unless one is there; safe for racing workers."""
    if (folder / "model_index.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename: a reader never sees a half-written folder.
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        build_tiny_sdxl().save_pretrained(tmp)
        try:
            tmp.rename(folder)
        except OSError:
            # Another worker won the race; its copy is as good as ours.
            if not (folder / "model_index.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
    return folder
