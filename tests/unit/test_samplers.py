from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import (
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    StableDiffusionXLPipeline,
)

from models.domain.samplers import DEFAULT_SAMPLER, SAMPLERS, a1111_name, canonical_sampler
from worker.samplers import make_scheduler
from worker.tiny_sdxl import build_tiny_sdxl

# diffusers' schedulers hand torch tensors to numpy functions; numpy 2 deprecates the
# protocol torch implements for that. Harmless, and not ours to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning"),
]

# The scheduler_config.json of SDXL base 1.0, extra keys and all.
SDXL_BASE_SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "EulerDiscreteScheduler",
    "_diffusers_version": "0.19.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("euler_a", "euler_a"),
        ("Euler a", "euler_a"),
        ("EULER A", "euler_a"),
        ("euler-a", "euler_a"),
        ("k_euler_a", "euler_a"),
        ("Euler Ancestral", "euler_a"),
        ("Euler", "euler"),
        ("DPM++ 2M", "dpmpp_2m"),
        ("dpm++ 2m karras", "dpmpp_2m_karras"),
        ("dpmpp_2m_karras", "dpmpp_2m_karras"),
        ("DPMPP-2M-Karras", "dpmpp_2m_karras"),
        ("  DPM++ 2M SDE  ", "dpmpp_2m_sde"),
        ("DPM++ 2M SDE Karras", "dpmpp_2m_sde_karras"),
        ("k_dpmpp_2m_sde_ka", "dpmpp_2m_sde_karras"),
        ("DDIM", "ddim"),
        ("UniPC", "unipc"),
        ("uni_pc", "unipc"),
        ("Heun", "heun"),
        ("DPM2", "dpm2"),
        ("DPM2 a", "dpm2_a"),
        ("DPM2 a Karras", "dpm2_a_karras"),
    ],
)
def test_canonical_sampler_accepts_aliases(name: str, expected: str) -> None:
    assert canonical_sampler(name) == expected


@pytest.mark.parametrize("name", ["", "LMS", "DPM++ SDE Karras", "euler b", "PLMS"])
def test_unknown_sampler_lists_valid_names(name: str) -> None:
    with pytest.raises(ValueError, match=r"unknown sampler .*'Euler a' \(euler_a\)"):
        canonical_sampler(name)


def test_every_spelling_maps_back_to_its_own_sampler() -> None:
    for info in SAMPLERS.values():
        for name in (info.id, info.a1111_name, *info.aliases):
            assert canonical_sampler(name) == info.id, name
        assert a1111_name(info.id) == info.a1111_name
    assert DEFAULT_SAMPLER in SAMPLERS
    assert a1111_name("EULER A") == "Euler a"


@pytest.mark.parametrize(
    ("name", "schedule", "expected"),
    [
        ("DPM++ 2M", "Karras", "dpmpp_2m_karras"),
        ("DPM++ 2M", "Automatic", "dpmpp_2m"),
        ("DPM++ 2M", None, "dpmpp_2m"),
        ("DPM++ 2M Karras", "Karras", "dpmpp_2m_karras"),
        ("DPM2 a", "karras", "dpm2_a_karras"),
    ],
)
def test_a1111_schedule_type(name: str, schedule: str | None, expected: str) -> None:
    assert canonical_sampler(name, schedule) == expected


@pytest.mark.parametrize(("name", "schedule"), [("Euler a", "Karras"), ("DPM++ 2M", "Exponential")])
def test_unsupported_schedule_type(name: str, schedule: str) -> None:
    with pytest.raises(ValueError, match="schedule type"):
        canonical_sampler(name, schedule)


def scheduler_for(sampler_id: str, base: Mapping[str, Any] = SDXL_BASE_SCHEDULER_CONFIG) -> Any:
    # Typed Any: each scheduler class has its own attributes (sigmas, config fields).
    return make_scheduler(sampler_id, base)


@pytest.mark.parametrize("sampler_id", sorted(SAMPLERS))
def test_make_scheduler_from_sdxl_config(sampler_id: str) -> None:
    scheduler = scheduler_for(sampler_id)
    config = scheduler.config
    assert config.beta_schedule == "scaled_linear"
    assert config.timestep_spacing == "leading"
    assert config.steps_offset == 1
    if "use_karras_sigmas" in config:
        assert config.use_karras_sigmas == SAMPLERS[sampler_id].karras
    else:
        assert not SAMPLERS[sampler_id].karras
    scheduler.set_timesteps(10)
    assert len(scheduler.timesteps) >= 10


def test_dpmpp_mapping() -> None:
    plain = scheduler_for("DPM++ 2M")
    sde = scheduler_for("dpmpp_2m_sde_karras")
    assert isinstance(plain, DPMSolverMultistepScheduler)
    assert (plain.config.algorithm_type, plain.config.solver_order) == ("dpmsolver++", 2)
    assert (sde.config.algorithm_type, sde.config.use_karras_sigmas) == ("sde-dpmsolver++", True)
    assert isinstance(scheduler_for("euler_a"), EulerAncestralDiscreteScheduler)


def test_karras_sigmas_differ_and_do_not_leak() -> None:
    euler = scheduler_for("euler", {**SDXL_BASE_SCHEDULER_CONFIG, "use_karras_sigmas": True})
    assert isinstance(euler, EulerDiscreteScheduler)
    assert euler.config.use_karras_sigmas is False  # the base config's flag is dropped
    plain = scheduler_for("dpmpp_2m", scheduler_for("dpmpp_2m_karras").config)
    with_karras = scheduler_for("dpmpp_2m_karras")
    fresh = scheduler_for("dpmpp_2m")
    for scheduler in (plain, with_karras, fresh):
        scheduler.set_timesteps(10)
    assert not torch.equal(plain.sigmas, with_karras.sigmas)
    assert torch.equal(plain.sigmas, fresh.sigmas)


def test_worker_knows_every_sampler() -> None:
    from worker.samplers import _SCHEDULERS

    assert set(_SCHEDULERS) == set(SAMPLERS)


def test_unknown_sampler_id_for_scheduler() -> None:
    with pytest.raises(ValueError, match="unknown sampler"):
        make_scheduler("lms", SDXL_BASE_SCHEDULER_CONFIG)


@pytest.fixture(scope="module")
def tiny_pipe() -> StableDiffusionXLPipeline:
    return build_tiny_sdxl()


@pytest.mark.parametrize("sampler_id", sorted(SAMPLERS))
def test_every_sampler_renders(tiny_pipe: StableDiffusionXLPipeline, sampler_id: str) -> None:
    tiny_pipe.scheduler = make_scheduler(sampler_id, tiny_pipe.scheduler.config)
    images = tiny_pipe(
        "1girl, solo",
        negative_prompt="lowres",
        num_inference_steps=2,
        width=64,
        height=64,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert images.shape == (1, 64, 64, 3)
    assert np.isfinite(images).all()
