from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLPipeline
from safetensors.torch import save_file

from models.domain.model_sources import ModelSource, parse_model_source
from worker.model_loading import a1111_model_hash, load_pipeline, model_fingerprint
from worker.renderer import DiffusersRenderer, RenderBatch, receipt_of
from worker.tiny_sdxl import build_tiny_sdxl, ensure_tiny_sdxl

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning"),
]


SMALL: dict[str, Any] = {
    "width": 64,
    "height": 64,
    "steps": 1,
    "guidance_scale": 7.0,
    "sampler": "euler_a",
}


def render(pipe: StableDiffusionXLPipeline) -> np.ndarray:
    images: np.ndarray = pipe(
        "1girl, solo",
        negative_prompt="lowres",
        num_inference_steps=2,
        width=64,
        height=64,
        generator=torch.Generator().manual_seed(7),
        output_type="np",
    ).images
    return images


@pytest.fixture(scope="module")
def reference_pixels() -> np.ndarray:
    pipe = build_tiny_sdxl()
    pipe.set_progress_bar_config(disable=True)
    return render(pipe)


def test_tiny_source_loads_through_the_folder_path(
    tmp_path: Path, reference_pixels: np.ndarray
) -> None:
    pipe = load_pipeline(parse_model_source("tiny-sdxl"), device="cpu", cache_dir=tmp_path)
    assert (tmp_path / "tiny-sdxl" / "model_index.json").is_file()
    assert pipe.unet.dtype == torch.float32
    assert pipe.watermark is None
    np.testing.assert_array_equal(render(pipe), reference_pixels)

    folder = parse_model_source(str(tmp_path / "tiny-sdxl"))
    assert folder.kind == "folder"
    again = load_pipeline(folder, device="cpu", cache_dir=tmp_path, dtype=torch.bfloat16)
    assert again.unet.dtype == torch.bfloat16


def test_missing_sources_name_the_path(tmp_path: Path) -> None:
    missing_file = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing_file))):
        load_pipeline(parse_model_source(str(missing_file)), device="cpu", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no model_index\.json"):
        load_pipeline(ModelSource("folder", str(tmp_path)), device="cpu", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="simulated"):
        load_pipeline(parse_model_source("simulated:1"), device="cpu", cache_dir=tmp_path)


def test_single_file_checkpoint_round_trip(tmp_path: Path, reference_pixels: np.ndarray) -> None:
    pipe = build_tiny_sdxl()
    checkpoint = tmp_path / "tiny-sdxl.safetensors"
    save_file(sdxl_original_layout(pipe), checkpoint)
    # Offline, diffusers needs the configs, tokenizers and scheduler from a folder.
    config = ensure_tiny_sdxl(tmp_path / "config")

    source = parse_model_source(str(checkpoint))
    loaded = load_pipeline(source, device="cpu", cache_dir=tmp_path, single_file_config=config)

    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        expected, actual = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert expected.keys() == actual.keys(), name
        assert all(torch.equal(expected[k], actual[k]) for k in expected), name
    np.testing.assert_array_equal(render(loaded), reference_pixels)
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert model_fingerprint(source) == f"single_file:tiny-sdxl.safetensors:{digest[:10]}"
    # A1111's "Model hash" of the file: what the renderer writes into every infotext.
    assert a1111_model_hash(source) == digest[:10]
    renderer = DiffusersRenderer(loaded, model_name="tiny", model_hash=a1111_model_hash(source))
    [image] = renderer.render(RenderBatch.of(prompts=["1girl"], seeds=[1], **SMALL))
    receipt = receipt_of(image)
    assert receipt is not None and (receipt.model_hash, receipt.rng) == (digest[:10], "CPU")
    # Sources that are not one file on this machine have no such hash.
    for other in ("tiny-sdxl", "org/name", "https://example.com/a.safetensors", str(tmp_path)):
        assert a1111_model_hash(parse_model_source(other)) is None


# --- Writing a diffusers SDXL pipeline as an A1111/SGM single checkpoint -------------
# The inverse of diffusers' single-file conversion (diffusers.loaders.single_file_utils),
# for tiny configs: what `scripts/convert_diffusers_to_original_sdxl.py` does for full size.

_UNET_LAYERS = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_BLOCK = re.compile(r"(down|up)_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)")
_SAMPLER = re.compile(r"(down|up)_blocks\.(\d+)\.(downsamplers|upsamplers)\.0\.conv\.(.+)")
_MID = re.compile(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)")


def sdxl_original_layout(pipe: StableDiffusionXLPipeline) -> dict[str, torch.Tensor]:
    checkpoint = {
        **_unet_layout(pipe.unet),
        **_vae_layout(pipe.vae),
        **_clip_l_layout(pipe.text_encoder),
        **_open_clip_layout(pipe.text_encoder_2),
    }
    return {key: value.contiguous() for key, value in checkpoint.items()}


def _resnet(tail: str) -> str:
    name, _, param = tail.rpartition(".")
    return f"{_RESNET[name]}.{param}"


def _unet_layout(unet: Any) -> dict[str, torch.Tensor]:
    step = unet.config.layers_per_block + 1  # ldm numbers every layer, samplers included
    with_attention = {i for i, block in enumerate(unet.up_blocks) if hasattr(block, "attentions")}
    out = {}
    for key, value in unet.state_dict().items():
        module, _, param = key.rpartition(".")
        if module in _UNET_LAYERS:
            new = f"{_UNET_LAYERS[module]}.{param}"
        elif m := _BLOCK.fullmatch(key):
            side, block, kind, layer, tail = m[1], int(m[2]), m[3], int(m[4]), m[5]
            index = 1 + block * step + layer if side == "down" else block * step + layer
            prefix = "input_blocks" if side == "down" else "output_blocks"
            new = (
                f"{prefix}.{index}.0.{_resnet(tail)}"
                if kind == "resnets"
                else f"{prefix}.{index}.1.{tail}"
            )
        elif m := _SAMPLER.fullmatch(key):
            block = int(m[2])
            if m[1] == "down":
                new = f"input_blocks.{(block + 1) * step}.0.op.{m[4]}"
            else:
                slot = 2 if block in with_attention else 1
                new = f"output_blocks.{block * step + step - 1}.{slot}.conv.{m[4]}"
        elif m := _MID.fullmatch(key):
            new = (
                f"middle_block.{2 * int(m[2])}.{_resnet(m[3])}"
                if m[1] == "resnets"
                else f"middle_block.1.{m[3]}"
            )
        else:
            raise AssertionError(f"no original-layout name for UNet key {key}")
        out[f"model.diffusion_model.{new}"] = value
    return out


def _vae_layout(vae: Any) -> dict[str, torch.Tensor]:
    levels = len(vae.config.block_out_channels)
    rules: list[tuple[str, Any]] = [
        (r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block."),
        (r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample."),
        (r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}."),
        (
            r"decoder\.up_blocks\.(\d+)\.resnets\.",
            lambda m: f"decoder.up.{levels - 1 - int(m[1])}.block.",
        ),
        (
            r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
            lambda m: f"decoder.up.{levels - 1 - int(m[1])}.upsample.",
        ),
        (r"conv_norm_out", "norm_out"),
        (r"conv_shortcut", "nin_shortcut"),
    ]
    out = {}
    for key, value in vae.state_dict().items():
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
        out[f"first_stage_model.{key}"] = value
    return out


def _clip_l_layout(text_encoder: Any) -> dict[str, torch.Tensor]:
    # transformers 5 flattened CLIPTextModel; checkpoints keep the "text_model." level.
    prefix = "conditioner.embedders.0.transformer.text_model."
    return {
        prefix + key.removeprefix("text_model."): value
        for key, value in text_encoder.state_dict().items()
    }


def _open_clip_layout(text_encoder_2: Any) -> dict[str, torch.Tensor]:
    prefix = "conditioner.embedders.1.model."
    state = dict(text_encoder_2.state_dict())
    out = {
        f"{prefix}text_projection": state.pop("text_projection.weight").T,
        f"{prefix}token_embedding.weight": state.pop(
            "text_model.embeddings.token_embedding.weight"
        ),
        f"{prefix}positional_embedding": state.pop(
            "text_model.embeddings.position_embedding.weight"
        ),
        f"{prefix}ln_final.weight": state.pop("text_model.final_layer_norm.weight"),
        f"{prefix}ln_final.bias": state.pop("text_model.final_layer_norm.bias"),
    }
    renames = {
        "self_attn.out_proj": "attn.out_proj",
        "layer_norm1": "ln_1",
        "layer_norm2": "ln_2",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
    }
    for i in range(text_encoder_2.config.num_hidden_layers):
        src, dst = f"text_model.encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for param in ("weight", "bias"):
            qkv = [state.pop(f"{src}self_attn.{p}_proj.{param}") for p in "qkv"]
            out[f"{dst}attn.in_proj_{param}"] = torch.cat(qkv)
            for old, new in renames.items():
                out[f"{dst}{new}.{param}"] = state.pop(f"{src}{old}.{param}")
    assert not state, f"no original-layout name for text_encoder_2 keys {sorted(state)}"
    return out
