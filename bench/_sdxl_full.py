"""Full-size SDXL with random weights: the architecture of SDXL base / Animagine XL 3.1
(UNet 2.567 B parameters, VAE 83.7 M, CLIP-L 123 M, OpenCLIP bigG 695 M) built from its
published configs, for timing the GPU path when no real weights are at hand. Speed does
not depend on the weights' values; the pictures are noise.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    EulerAncestralDiscreteScheduler,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from worker.tiny_sdxl import SDXL_SCHEDULER_CONFIG, build_tokenizers

# stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (the fields that shape it).
UNET_CONFIG: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "norm_num_groups": 32,
}

# vae/config.json
VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}

# text_encoder (CLIP ViT-L/14) and text_encoder_2 (OpenCLIP ViT-bigG/14).
TEXT_CONFIGS: dict[str, dict[str, Any]] = {
    "clip_l": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "hidden_act": "quick_gelu",
        "projection_dim": 768,
    },
    "clip_bigg": {
        "hidden_size": 1280,
        "intermediate_size": 5120,
        "num_hidden_layers": 32,
        "num_attention_heads": 20,
        "hidden_act": "gelu",
        "projection_dim": 1280,
    },
}
VOCAB_SIZE = 49408


def _text_config(name: str, eos_token_id: int, bos_token_id: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=77,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=eos_token_id,
        **TEXT_CONFIGS[name],
    )


def build_modules(device: str | torch.device) -> dict[str, torch.nn.Module]:
    """The four networks, initialised on ``device`` (``"meta"``: shapes only, no memory)."""
    tokenizer, _ = build_tokenizers()  # a byte-level vocab: ids stay below VOCAB_SIZE
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    with torch.device(device):
        return {
            "unet": UNet2DConditionModel(**UNET_CONFIG),
            "vae": AutoencoderKL(**VAE_CONFIG),
            "text_encoder": CLIPTextModel(_text_config("clip_l", eos, bos)),
            "text_encoder_2": CLIPTextModelWithProjection(_text_config("clip_bigg", eos, bos)),
        }


def parameter_counts(modules: dict[str, torch.nn.Module]) -> dict[str, int]:
    return {name: sum(p.numel() for p in m.parameters()) for name, m in modules.items()}


def build_full_sdxl(device: str, dtype: torch.dtype) -> StableDiffusionXLPipeline:
    """Full-size SDXL, random weights, on ``device`` in ``dtype`` (initialised there: fast)."""
    tokenizer, tokenizer_2 = build_tokenizers()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        modules = build_modules(device)
    pipe = StableDiffusionXLPipeline(
        **modules,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        scheduler=EulerAncestralDiscreteScheduler.from_config(SDXL_SCHEDULER_CONFIG),
        add_watermarker=False,
    )
    pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe
