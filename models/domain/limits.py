"""The operator's limits, as the domain sees them: plain values, no settings object.

Built from ``FARM_*`` settings by ``Settings.limits`` (models/infra/settings.py), so the
rules that check a spec against them (``check_limits``) never import configuration.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    default_model: str
    models: frozenset[str]  # the enabled model names a request may use
    max_grid_cells: int = 10_000
    max_prompts: int = 1_000
    max_prompt_chars: int = 4_000
    max_seeds: int = 10_000
    max_steps: int = 150
    max_bulk_jobs: int = 100
    webhook_allow_private: bool = False
