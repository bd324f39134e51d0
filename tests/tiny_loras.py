"""Tiny LoRAs for the tiny SDXL, built offline with peft and saved as real files.

Each LoRA is trained on nothing: peft adds rank-4 adapters to the UNet's attention (and,
for a text-encoder LoRA, to both CLIP encoders' attention) with random A and B (a fresh
LoRA's B is zeros, which would change nothing), and diffusers saves them in its own
layout (``pytorch_lora_weights.safetensors``). The kohya layout (what Civitai serves:
``lora_unet_...lora_down.weight``, ``.alpha``) is diffusers' own conversion of the same
weights, with kohya's metadata. Loading goes through the farm's real code either way.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import StableDiffusionXLPipeline
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
from safetensors.torch import save_file

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


@dataclass(frozen=True)
class TinyLoras:
    style: Path  # diffusers folder: UNet only
    style_kohya: Path  # the same weights, kohya's layout, one file
    text: Path  # diffusers file: both text encoders only
    other: Path  # another UNet LoRA (a second style)
    foreign: Path  # kohya file that says it is for SD 1.5
    wrong_shape: Path  # says nothing, but its shapes fit no tiny SDXL layer


def _config(targets: list[str], seed: int) -> LoraConfig:
    torch.manual_seed(seed)
    return LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False)


def _scaled(state: dict[str, torch.Tensor], factor: float) -> dict[str, torch.Tensor]:
    # Random init is small; a larger B makes the effect plain in a 2-step render.
    return {k: v * factor if "lora_B" in k else v for k, v in state.items()}


def _unet_lora(pipe: StableDiffusionXLPipeline, seed: int) -> dict[str, torch.Tensor]:
    pipe.unet.add_adapter(_config(UNET_TARGETS, seed), adapter_name=f"build{seed}")
    state = _scaled(get_peft_model_state_dict(pipe.unet, adapter_name=f"build{seed}"), 8.0)
    pipe.unet.delete_adapters(f"build{seed}")
    return state


def _text_lora(encoder: Any, seed: int) -> dict[str, torch.Tensor]:
    # peft itself: transformers' add_adapter asks for a newer peft (worker/peft_compat.py).
    name = f"build{seed}"
    inject_adapter_in_model(_config(TEXT_TARGETS, seed), encoder, adapter_name=name)
    return _scaled(get_peft_model_state_dict(encoder, adapter_name=name), 8.0)


def _kohya(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """peft keys (``down_blocks.1...to_q.lora_A.weight``) as kohya writes them."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        module, _, kind = key.rpartition(".lora_")
        name = f"{prefix}_{module.replace('.', '_')}"
        out[f"{name}.lora_{'down' if kind.startswith('A') else 'up'}.weight"] = value
        out[f"{name}.alpha"] = torch.tensor(float(value.shape[0 if kind.startswith("A") else 1]))
    return out


def build_tiny_loras(model_folder: Path, out: Path) -> TinyLoras:
    pipe = StableDiffusionXLPipeline.from_pretrained(model_folder)
    out.mkdir(parents=True, exist_ok=True)
    style = _unet_lora(pipe, 1)
    other = _unet_lora(pipe, 2)
    te1, te2 = _text_lora(pipe.text_encoder, 3), _text_lora(pipe.text_encoder_2, 4)
    folder = out / "style-lora"
    StableDiffusionXLPipeline.save_lora_weights(folder, unet_lora_layers=style)
    other_folder = out / "other-lora"
    StableDiffusionXLPipeline.save_lora_weights(other_folder, unet_lora_layers=other)
    text_folder = out / "text-lora"
    StableDiffusionXLPipeline.save_lora_weights(
        text_folder, text_encoder_lora_layers=te1, text_encoder_2_lora_layers=te2
    )
    kohya = out / "style_kohya.safetensors"
    save_file(
        _kohya(style, "lora_unet"),
        str(kohya),
        metadata={"ss_base_model_version": "tiny-sdxl", "ss_network_module": "networks.lora"},
    )
    foreign = out / "sd15_style.safetensors"
    save_file(_kohya(style, "lora_unet"), str(foreign), metadata={"ss_base_model_version": "sd_v1"})
    wrong = out / "wrong_shape.safetensors"
    wrong_state = {
        f"unet.{k}": torch.ones(v.shape[0] + 3, v.shape[1] + 5) for k, v in style.items()
    }
    save_file(wrong_state, str(wrong))
    return TinyLoras(
        style=folder,
        style_kohya=kohya,
        text=text_folder / "pytorch_lora_weights.safetensors",
        other=other_folder,
        foreign=foreign,
        wrong_shape=wrong,
    )


def rewrite_metadata(path: Path, metadata: dict[str, str]) -> None:
    """The same tensors under new metadata (A1111's hash must not change)."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    header["__metadata__"] = metadata
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + raw[8 + length :])


def farm_loras(loras: TinyLoras) -> dict[str, Any]:
    """FARM_LORAS for them (folder, kohya file, text-encoder file and the refused ones)."""
    return {
        "style": {"source": str(loras.style), "trigger_words": ["tinystyle"], "url": "local"},
        "style-kohya": str(loras.style_kohya),
        "text": {"source": str(loras.text), "base_model": "tiny-sdxl"},
        "other": str(loras.other),
        "sd15": str(loras.foreign),
        "broken": str(loras.wrong_shape),
    }
