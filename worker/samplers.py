"""Canonical sampler id -> diffusers scheduler, after diffusers' A1111 mapping table
(https://huggingface.co/docs/diffusers/api/schedulers/overview)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from diffusers import (
    ConfigMixin,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    SchedulerMixin,
    UniPCMultistepScheduler,
)

from models.domain.samplers import SAMPLERS, canonical_sampler

_DPMPP_2M = {"algorithm_type": "dpmsolver++", "solver_order": 2}
_DPMPP_2M_SDE = {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}

# id -> (scheduler class, settings that define the sampler). Karras variants are the
# same class with use_karras_sigmas=True.
_SCHEDULERS: dict[str, tuple[type[ConfigMixin], dict[str, Any]]] = {
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, _DPMPP_2M),
    "dpmpp_2m_karras": (DPMSolverMultistepScheduler, _DPMPP_2M),
    "dpmpp_2m_sde": (DPMSolverMultistepScheduler, _DPMPP_2M_SDE),
    "dpmpp_2m_sde_karras": (DPMSolverMultistepScheduler, _DPMPP_2M_SDE),
    "ddim": (DDIMScheduler, {}),
    "unipc": (UniPCMultistepScheduler, {}),
    "heun": (HeunDiscreteScheduler, {}),
    "dpm2": (KDPM2DiscreteScheduler, {}),
    "dpm2_karras": (KDPM2DiscreteScheduler, {}),
    "dpm2_a": (KDPM2AncestralDiscreteScheduler, {}),
    "dpm2_a_karras": (KDPM2AncestralDiscreteScheduler, {}),
}

# Keys that pick a sampling algorithm rather than describe the model's noise schedule.
# A base config taken from another sampler's scheduler (pipe.scheduler.config after a
# switch) carries them; dropped, so that e.g. "Euler" never inherits Karras sigmas.
_ALGORITHM_KEYS = frozenset(
    {
        "algorithm_type",
        "solver_order",
        "solver_type",
        "lower_order_final",
        "euler_at_final",
        "final_sigmas_type",
        "lambda_min_clipped",
        "variance_type",
        "predict_x0",
        "disable_corrector",
        "solver_p",
        "use_karras_sigmas",
        "use_exponential_sigmas",
        "use_beta_sigmas",
        "use_lu_lambdas",
    }
)


def make_scheduler(sampler_id: str, base_config: Mapping[str, Any]) -> SchedulerMixin:
    """A fresh scheduler for `sampler_id` on the model's noise schedule.

    `base_config` is the model's scheduler config (`pipe.scheduler.config`): it supplies
    the betas, timestep spacing and prediction type; the sampler supplies the algorithm.
    """
    sampler_id = canonical_sampler(sampler_id)
    cls, settings = _SCHEDULERS[sampler_id]
    config = {key: value for key, value in base_config.items() if key not in _ALGORITHM_KEYS}
    overrides = dict(settings)
    if SAMPLERS[sampler_id].karras:
        overrides["use_karras_sigmas"] = True
    # from_config, not the constructor: it drops the keys this class does not know
    # (SDXL's config carries e.g. skip_prk_steps), which __init__ rejects.
    scheduler: SchedulerMixin = cls.from_config(config, **overrides)
    return scheduler
