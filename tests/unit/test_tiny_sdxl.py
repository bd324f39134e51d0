from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline

from worker.tiny_sdxl import build_tiny_sdxl, build_tokenizers, ensure_tiny_sdxl

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning"),
]

TAGS = (
    "1girl, solo, long hair, looking at viewer, blush, smile, open mouth, bangs, blue eyes, "
    "(masterpiece:1.2), [best quality], {absurdres}, very aesthetic, école, 日本語, ★, 🌸"
)
LONG_PROMPT = ", ".join(f"tag_{i} {word}" for i, word in enumerate(TAGS.split(", ") * 7))


def render(pipe: StableDiffusionXLPipeline, seed: int = 0) -> np.ndarray:
    images: np.ndarray = pipe(
        "1girl, solo, cherry blossoms",
        negative_prompt="lowres, bad anatomy",
        num_inference_steps=2,
        width=64,
        height=64,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    ).images
    return images


@pytest.fixture(scope="module")
def tiny_pipe() -> StableDiffusionXLPipeline:
    return build_tiny_sdxl()


def test_tokenizers_handle_danbooru_prompts() -> None:
    tokenizer, tokenizer_2 = build_tokenizers()
    assert len(LONG_PROMPT.split(", ")) > 100
    ids = tokenizer(LONG_PROMPT).input_ids
    assert len(ids) > 77  # long prompts overflow: truncation and chunking matter
    assert ids[0] == tokenizer.bos_token_id
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in ids[1:-1]  # every byte has a token
    truncated = tokenizer(LONG_PROMPT, truncation=True, max_length=tokenizer.model_max_length)
    assert len(truncated.input_ids) == 77
    assert tokenizer.tokenize("1girl, solo")[:2] == ["1</w>", "girl</w>"]
    # SDXL's second tokenizer pads with "!", the first with <|endoftext|>.
    padded = tokenizer_2("solo", padding="max_length", max_length=77).input_ids
    assert padded[-1] == tokenizer_2.convert_tokens_to_ids("!") == 0
    assert tokenizer("solo", padding="max_length").input_ids[-1] == tokenizer.eos_token_id


def test_shape_matches_sdxl(tiny_pipe: StableDiffusionXLPipeline) -> None:
    assert tiny_pipe.vae_scale_factor == 8
    assert tiny_pipe.default_sample_size * tiny_pipe.vae_scale_factor == 1024
    assert tiny_pipe.unet.config.addition_embed_type == "text_time"
    assert tiny_pipe.watermark is None
    assert isinstance(tiny_pipe.scheduler, EulerAncestralDiscreteScheduler)
    assert tiny_pipe.scheduler.config.timestep_spacing == "leading"
    assert tiny_pipe.tokenizer.model_max_length == 77


def test_build_is_seeded_and_keeps_global_rng() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first, again, other = build_tiny_sdxl(0), build_tiny_sdxl(0), build_tiny_sdxl(1)
    assert torch.equal(torch.rand(1), expected_next)
    a, b, c = (p.unet.state_dict() for p in (first, again, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_long_and_unicode_prompts_render(tiny_pipe: StableDiffusionXLPipeline) -> None:
    images = tiny_pipe(
        LONG_PROMPT,
        negative_prompt=TAGS,
        num_inference_steps=2,
        width=64,
        height=64,
        output_type="np",
    ).images
    assert images.shape == (1, 64, 64, 3)
    assert np.isfinite(images).all()


def test_save_and_reload_renders_same_pixels(
    tiny_pipe: StableDiffusionXLPipeline, tmp_path: Path
) -> None:
    folder = ensure_tiny_sdxl(tmp_path / "tiny-sdxl")
    assert (folder / "model_index.json").is_file()
    reloaded = StableDiffusionXLPipeline.from_pretrained(folder, add_watermarker=False)
    reloaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(render(reloaded), render(tiny_pipe))
    assert not np.array_equal(render(tiny_pipe, seed=1), render(tiny_pipe, seed=0))


def test_ensure_is_idempotent_and_race_safe(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "tiny-sdxl"
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(ensure_tiny_sdxl(folder))
        except BaseException as exc:  # collected, re-raised by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == [folder] * 3
    assert [p.name for p in folder.parent.iterdir()] == ["tiny-sdxl"]  # no temp dirs left
    stamp = (folder / "model_index.json").stat().st_mtime_ns
    assert ensure_tiny_sdxl(folder) == folder
    assert (folder / "model_index.json").stat().st_mtime_ns == stamp
