"""Sampler names: our canonical ids, A1111's display names, and the aliases people type.

Pure data (no torch): the API validates names with it; the worker maps ids to diffusers
schedulers in `worker.samplers`. Only samplers diffusers implements faithfully are here:
LMS (needs scipy), DPM++ SDE (needs torchsde), DPM++ 2S a, DPM fast and DPM adaptive
(no diffusers equivalent) are left out on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplerInfo:
    id: str
    a1111_name: str
    # Other spellings: A1111's internal names (k_*), ComfyUI's names.
    aliases: tuple[str, ...] = ()
    # Which A1111 >= 1.9 "Schedule type" this id implies, for infotexts that split it.
    karras: bool = False
    # Two model calls per step (A1111's "second_order"): prompt editing counts both.
    second_order: bool = False


DEFAULT_SAMPLER = "euler_a"

_ALL = (
    SamplerInfo("euler_a", "Euler a", ("k_euler_a", "euler_ancestral", "Euler Ancestral")),
    SamplerInfo("euler", "Euler", ("k_euler",)),
    SamplerInfo("dpmpp_2m", "DPM++ 2M", ("k_dpmpp_2m",)),
    SamplerInfo("dpmpp_2m_karras", "DPM++ 2M Karras", ("k_dpmpp_2m_ka",), karras=True),
    SamplerInfo("dpmpp_2m_sde", "DPM++ 2M SDE", ("k_dpmpp_2m_sde",)),
    SamplerInfo("dpmpp_2m_sde_karras", "DPM++ 2M SDE Karras", ("k_dpmpp_2m_sde_ka",), karras=True),
    SamplerInfo("ddim", "DDIM"),
    SamplerInfo("unipc", "UniPC", ("uni_pc",)),
    SamplerInfo("heun", "Heun", ("k_heun",), second_order=True),
    SamplerInfo("dpm2", "DPM2", ("k_dpm_2", "dpm_2"), second_order=True),
    SamplerInfo("dpm2_karras", "DPM2 Karras", ("k_dpm_2_ka",), karras=True, second_order=True),
    SamplerInfo("dpm2_a", "DPM2 a", ("k_dpm_2_a", "dpm_2_ancestral"), second_order=True),
    SamplerInfo(
        "dpm2_a_karras", "DPM2 a Karras", ("k_dpm_2_a_ka",), karras=True, second_order=True
    ),
)

SAMPLERS: dict[str, SamplerInfo] = {info.id: info for info in _ALL}


def _key(name: str) -> str:
    # "DPM++ 2M Karras", "dpmpp_2m_karras" and "dpm-pp 2m karras" all become "dpmpp2mkarras".
    return "".join(ch for ch in name.lower().replace("+", "p") if ch not in " _-\t")


_BY_KEY: dict[str, str] = {
    _key(name): info.id for info in _ALL for name in (info.id, info.a1111_name, *info.aliases)
}


def canonical_sampler(name: str, schedule_type: str | None = None) -> str:
    """The canonical id for any accepted spelling of a sampler.

    `schedule_type` is A1111 >= 1.9's separate "Schedule type" field ("Karras",
    "Automatic"): "DPM++ 2M" with "Karras" is "dpmpp_2m_karras".
    """
    sampler_id = _BY_KEY.get(_key(name))
    if sampler_id is None:
        valid = ", ".join(f"{info.a1111_name!r} ({info.id})" for info in _ALL)
        raise ValueError(f"unknown sampler {name!r}; valid samplers: {valid}")
    info = SAMPLERS[sampler_id]
    schedule = _key(schedule_type or "Automatic")
    if schedule == "automatic" or (schedule == "karras" and info.karras):
        return sampler_id
    if schedule == "karras" and f"{sampler_id}_karras" in SAMPLERS:
        return f"{sampler_id}_karras"
    raise ValueError(
        f"sampler {name!r} with schedule type {schedule_type!r} is not supported; "
        "supported: 'Automatic', and 'Karras' for samplers with a Karras variant"
    )


def a1111_name(sampler_id: str) -> str:
    """A1111's display name, as written in infotexts ("Euler a")."""
    return SAMPLERS[canonical_sampler(sampler_id)].a1111_name


def total_steps(sampler_id: str, steps: int) -> int:
    """The steps a prompt-editing schedule spans (A1111's ``SamplerData.total_steps``):
    twice the steps for a second-order sampler, which calls the model twice per step
    (diffusers' loop then runs ``2 * steps - 1`` iterations, one per model call)."""
    return steps * 2 if SAMPLERS[canonical_sampler(sampler_id)].second_order else steps
