"""What a render ran on: the farm's version, the libraries that shape pixels, the device.

The PNG's infotext carries the farm's version (``Version: farm x.y.z``); the job's
manifest carries all of it, so that a result can be tied to its environment.
"""

from __future__ import annotations

import platform
from functools import lru_cache
from importlib import metadata

LIBRARIES = ("torch", "diffusers", "transformers")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


@lru_cache(maxsize=1)
def farm_version() -> str:
    """``farm 0.1.0``: never a bare number, which A1111 would read as its own version."""
    return f"farm {_version('animagine-farm')}"


def device_name(device: str) -> str:
    """``cpu``, or ``cuda:0 (NVIDIA H100 80GB HBM3)``."""
    if not device.startswith("cuda"):
        return device
    import torch

    return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"


@lru_cache(maxsize=4)
def worker_environment(configured_device: str) -> dict[str, str]:
    """The manifest's ``environment``: versions and the device (FARM_DEVICE, or what the
    worker picks without it) of the worker that writes it."""
    from worker.runtime import resolve_device

    return {
        "farm": farm_version(),
        "python": platform.python_version(),
        **{name: _version(name) for name in LIBRARIES},
        "device": device_name(resolve_device(configured_device)),
    }
