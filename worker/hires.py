"""Hi-res fix: a latent upscale, then an img2img pass with the same pipeline components.

As in the Animagine XL demo's "upscaler": the first pass stops at latents, they are
resized with ``nearest-exact`` (A1111's "Latent (nearest-exact)" upscaler, the name
``models.domain.infotext`` records) and a
``StableDiffusionXLImg2ImgPipeline`` built from the txt2img pipeline's own modules
(no second model load) denoises them at ``strength``. The output size is the bucket
times ``scale``, rounded to a multiple of 8 (the VAE's scale factor).

Prompt editing in the second pass follows A1111's hi-res timeline (``[a:b:1.5]``
switches half way through it; ``models.domain.prompt_schedule``): the renderer hands
this pass its own first embeddings and step callback with the rest of ``call``.

Steps follow A1111's meaning of "Hires steps", which is what the infotext records:
the second pass *runs* ``steps`` denoising steps (the cell's steps when unset), on
a schedule of ``int(steps / strength)`` steps, entered where ``strength`` of the
noise is left. Diffusers' img2img instead runs ``int(steps × strength)`` of
``steps``; ``img2img_schedule`` converts one into the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from PIL import Image

_MAX_STRENGTH = 0.999  # A1111 caps the denoising strength here when it sizes the schedule


@dataclass(frozen=True)
class HiresParams:
    scale: float
    strength: float
    steps: int | None = None  # steps the second pass runs; None: the first pass's steps

    def steps_for(self, first_pass_steps: int) -> int:
        return self.steps or first_pass_steps


def hires_size(width: int, height: int, scale: float, *, multiple: int = 8) -> tuple[int, int]:
    """The output size: ``(width, height) × scale`` rounded to a multiple of ``multiple``."""

    def scaled(side: int) -> int:
        return max(multiple, round(side * scale / multiple) * multiple)

    return scaled(width), scaled(height)


def img2img_schedule(
    requested_steps: int, strength: float, *, max_schedule: int = 1000
) -> tuple[int, float]:
    """``(num_inference_steps, strength)`` for diffusers' img2img so that it runs exactly
    ``requested_steps`` steps of a schedule of ``int(requested_steps / strength)``
    (A1111's ``setup_img2img_steps`` when the steps are given).

    Diffusers runs ``int(num_inference_steps * strength)`` steps; the returned strength
    lands that product half a step above ``requested_steps``, clear of rounding.
    The schedule is capped at the scheduler's training steps.
    """
    if requested_steps < 1:
        raise ValueError(f"the hi-res pass needs at least one step, not {requested_steps}")
    schedule = int(requested_steps / min(strength, _MAX_STRENGTH))
    schedule = max(requested_steps, min(schedule, max_schedule))
    return schedule, min(1.0, (requested_steps + 0.5) / schedule)


def upscale_latents(latents: torch.Tensor, width: int, height: int, *, factor: int) -> torch.Tensor:
    """Resize first-pass latents to the output size (``factor``: the VAE scale factor)."""
    import torch.nn.functional as F

    return F.interpolate(latents, size=(height // factor, width // factor), mode="nearest-exact")


def img2img_pipeline(pipe: Any) -> Any:
    """An SDXL img2img pipeline that shares every module of ``pipe``: no new weights."""
    from diffusers import StableDiffusionXLImg2ImgPipeline

    img2img = StableDiffusionXLImg2ImgPipeline(
        **pipe.components,
        requires_aesthetics_score=False,  # SDXL base / Animagine: size conditioning only
        force_zeros_for_empty_prompt=bool(pipe.config.get("force_zeros_for_empty_prompt", True)),
        add_watermarker=False,  # like the txt2img pipeline the farm loads
    )
    img2img.set_progress_bar_config(disable=True)
    return img2img


def second_pass(
    img2img: Any,
    latents: torch.Tensor,
    params: HiresParams,
    *,
    first_pass_steps: int,
    width: int,
    height: int,
    scheduler: Any,
    **call: Any,
) -> list[Image.Image]:
    """Upscale ``latents`` from the first pass and denoise them again; PIL images out.

    ``call`` carries what both passes share: the prompt embeddings, the guidance
    scale, the per-cell generators (their state continues from the first pass) and
    the step callback.
    """
    out_width, out_height = hires_size(width, height, params.scale)
    upscaled = upscale_latents(latents, out_width, out_height, factor=int(img2img.vae_scale_factor))
    steps, strength = img2img_schedule(
        params.steps_for(first_pass_steps),
        params.strength,
        max_schedule=int(scheduler.config.num_train_timesteps),
    )
    img2img.scheduler = scheduler
    output = img2img(
        image=upscaled,
        strength=strength,
        num_inference_steps=steps,
        output_type="pil",
        **call,
    )
    return list(output.images)


def upscale_images(images: list[Image.Image], width: int, height: int) -> list[Image.Image]:
    """Resize base images to the output size (A1111's "Lanczos" upscaler)."""
    from PIL import Image as PILImage

    return [im.convert("RGB").resize((width, height), PILImage.Resampling.LANCZOS) for im in images]


def pass_from_images(
    img2img: Any,
    images: list[Image.Image],
    params: HiresParams,
    *,
    first_pass_steps: int,
    width: int,
    height: int,
    scheduler: Any,
    **call: Any,
) -> list[Image.Image]:
    """The hi-res pass on stored images (a refinement's parent PNGs): resized in pixels,
    encoded by the VAE, denoised at ``strength``. The latents of the parent's base pass
    are not stored, so its image is the base; its noise comes from fresh generators of
    the same seeds (a render's hi-res pass continues the base pass's generator state)."""
    out_width, out_height = hires_size(width, height, params.scale)
    steps, strength = img2img_schedule(
        params.steps_for(first_pass_steps),
        params.strength,
        max_schedule=int(scheduler.config.num_train_timesteps),
    )
    img2img.scheduler = scheduler
    output = img2img(
        image=upscale_images(images, out_width, out_height),
        strength=strength,
        num_inference_steps=steps,
        output_type="pil",
        **call,
    )
    return list(output.images)
