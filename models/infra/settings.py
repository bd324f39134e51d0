"""The one configuration surface: environment variables with the ``FARM_`` prefix.

Every default is embedded so that ``farm demo`` runs on a laptop with no
services: SQLite, an in-process queue, a local folder for storage.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.domain.axes import QUALITY_TIERS
from models.domain.limits import Limits
from models.domain.model_sources import parse_model_source
from models.domain.prompt_pipeline import PromptLibrary
from models.infra.loras import FileLoraCatalog, LoraConfig, lora_configs
from models.infra.prompt_library import load_prompt_library
from models.infra.settings_db import DatabaseSettings
from models.infra.settings_scores import ScoreSettings
from models.infra.settings_storage import StorageSettings

DEFAULT_DATA_DIR = Path("farm-data")

# name -> source. A request may only name a key of this table, never a path.
DEFAULT_MODELS: dict[str, str] = {
    "animagine-xl-3.1": "cagliostrolab/animagine-xl-3.1",
    "tiny-sdxl": "tiny-sdxl",
    "simulated": "simulated:1.0",
}


def normalize_database_url(url: str) -> str:
    """Pick the driver for the user: ``postgresql://`` means psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Settings(DatabaseSettings, StorageSettings, ScoreSettings, BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FARM_", extra="ignore")

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = ""  # empty: SQLite inside data_dir
    broker_url: str = ""  # empty: in-process queue and worker (embedded mode)

    # Storage: S3 when a bucket is set, else a local folder.
    s3_endpoint_url: str | None = None
    s3_bucket: str = ""
    storage_dir: Path | None = None  # empty: data_dir / "storage"
    url_expiry_s: int = 3600
    public_base_url: str = "http://127.0.0.1:8000"  # where the API serves local files
    secret_key: str = ""  # signs local-file URLs; empty: a random one kept in data_dir

    model: str = "animagine-xl-3.1"  # default model name for jobs and workers
    models: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_MODELS))
    device: str = ""  # empty: cuda when available, else cpu
    model_cache_dir: Path | None = None  # empty: data_dir / "models"

    # Limits that protect the farm from absurd requests.
    max_grid_cells: int = 10_000
    max_prompts: int = 1_000
    max_prompt_chars: int = 4_000  # per encoded text: after tags, quality tags, Prompt S/R
    max_prompt_chunks: int = 12  # 75-token chunks per encoded text
    max_job_text_chars: int = 2_000_000  # distinct prompt text one job encodes, together
    max_seeds: int = 10_000
    max_steps: int = 150
    max_bulk_jobs: int = 100
    max_body_bytes: int = 2 * 1024 * 1024
    rate_limit_per_s: int = 100  # requests per tenant per second; 0 disables
    max_active_cells: int = 200_000  # queued + rendering cells per tenant; 0 disables
    max_cells_per_day: int = 2_000_000  # cells submitted per tenant in 24 h; 0 disables
    batch_size: int = 4  # cells per shard, rendered in one pipeline call
    # Prompt library (docs/PROMPTS.md): styles (A1111's styles.csv, or JSON; empty: the
    # Animagine demo's presets) and Dynamic Prompts wildcard lists (empty: none).
    styles_file: Path | None = None
    wildcards_dir: Path | None = None
    # LoRAs a request may name (docs/PROMPTS.md, "LoRA adapters"): a JSON object of
    # name -> source (a .safetensors file, a diffusers LoRA folder, a Hub id) or
    # name -> {"source", "base_model", "trigger_words", "url"}. Empty: none.
    loras: dict[str, LoraConfig] = Field(default_factory=dict)
    max_loras_per_cell: int = 5
    lora_cache_mb: int = 2048  # LoRA weights a worker keeps in host memory, all renderers
    lora_device_mb: int = 1024  # LoRA weights one renderer keeps loaded on its device
    # Shards the claim looks ahead for one whose LoRA set the worker has active (0: off),
    # and how many claims in a row it may prefer one over fair share's job.
    lora_affinity_lookahead: int = 8

    # Worker behaviour and fault tolerance.
    visibility_timeout_s: int = 4 * 3600  # above the longest shard
    shard_lease_s: int = 60  # renewed by the heartbeat; a dead worker's shard returns after it
    heartbeat_s: float = 1.0  # lease renewal and cancellation checks
    reconcile_interval_s: float = 5.0  # expired leases and lost messages
    max_attempts: int = 3  # per cell, then it is failed with its error
    retry_backoff_s: float = 2.0  # doubles with each attempt of a shard
    png_compress_level: int = 1  # 6 costs ~25% more CPU for ~5% smaller files

    # GPU path (worker/gpu_options.py): "auto" is the fastest safe choice on CUDA, off on CPU.
    gpu_dtype: str = "auto"  # auto | bf16 | fp16 | fp32
    gpu_sdpa: str = "auto"  # auto | on | off (PyTorch scaled_dot_product_attention)
    gpu_channels_last: str = "auto"
    gpu_fuse_qkv: str = "auto"  # pipe.fuse_qkv_projections()
    gpu_vae: str = ""  # an fp16-safe VAE (Hub id or folder), e.g. madebyollin/sdxl-vae-fp16-fix
    gpu_compile: str = "auto"  # auto | off | a torch.compile mode (max-autotune, ...)
    gpu_compile_fullgraph: bool = True
    gpu_warm_buckets: str = "1024x1024"  # comma-separated; compiled at worker start
    # The quality tiers the workers serve (comma-separated): a job may ask for these only,
    # and a worker that cannot serve one (fast: FP8 needs cc >= 8.9) refuses to start.
    quality_tiers: str = "exact,standard"
    api_key_cache_s: float = 5.0  # API: key -> tenant kept this long (a revoked key works so long)

    # Contact sheets, manifest and gallery (worker/job_artifacts.py).
    sheet_interval_s: float = 2.0  # a rendering prompt's sheet is redrawn at most this often
    sheet_max_rows: int = 32  # seeds shown on one contact sheet (the gallery shows all)

    # Campaigns (`farm beat`) and webhooks (delivered by `farm beat`).
    beat_interval_s: float = 5.0  # longest sleep between two scheduler passes
    webhook_allow_private: bool = False  # allow loopback/private/link-local receivers
    webhook_timeout_s: float = 10.0  # per HTTP attempt (connect, send, each read)
    webhook_max_age_s: int = 24 * 3600  # retry for this long after the event, then give up
    webhook_backoff_base_s: float = 10.0  # first retry delay; doubles, with jitter
    webhook_backoff_max_s: float = 3600.0
    webhook_concurrency: int = 8  # deliveries in flight per beat process

    # Running it as a business (docs/OPERATIONS.md): the operator's keys, screening,
    # retention, secrets at rest, progress webhooks.
    admin_keys: str = ""  # comma-separated operator keys for /v1/admin; empty: no admin API
    screening_model: str = ""  # Hugging Face image classifier (Hub id or folder); empty: none
    screening_labels: str = "nsfw"  # comma-separated labels whose probability is the score
    retention_s: int = 0  # files of a finished job are kept this long by default; 0: forever
    retention_sweep_interval_s: float = 30.0  # how often `farm beat` deletes what expired
    storage_delete_grace_s: float = 60.0  # deleted folders are swept again after this
    artifact_refresh_s: float = 5.0  # workers redraw sheets/galleries of released images
    encryption_keys: str = ""  # comma-separated Fernet keys; empty: derived from secret_key
    webhook_secret_grace_s: int = 86400  # a rotated-out webhook secret still signs this long
    webhook_progress_min_interval_s: float = 5.0  # floor between job.progress of one job

    # Observability (docs/DEPLOY.md, "Monitoring"): worker metrics port, service logs.
    metrics_port: int = 9100  # `farm worker` serves /metrics here; 0: no metrics server
    log_format: Literal["auto", "json", "text"] = "auto"  # auto: json unless stderr is a TTY
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    api_url: str = "http://127.0.0.1:8000"
    api_key: str = ""

    @field_validator("models", mode="before")
    @classmethod
    def _parse_models(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value)
        return value

    @field_validator("loras", mode="before")
    @classmethod
    def _parse_loras(cls, value: Any) -> Any:
        return lora_configs(json.loads(value) if isinstance(value, str) else value)

    @model_validator(mode="after")
    def _models_can_load(self) -> Settings:
        """A configuration that cannot work fails here, at start, saying what to set.

        Every source in FARM_MODELS must parse. FARM_MODEL may name one of them, or be a
        model source itself (a folder, ``simulated:0.25``, a Hub id): then it is enabled
        under its own name, as if FARM_MODELS listed it.
        """
        for name, source in self.models.items():
            try:
                parse_model_source(source)
            except ValueError as exc:
                raise ValueError(f"FARM_MODELS[{name!r}]: {exc}") from None
        if self.model not in self.models:
            try:
                parse_model_source(self.model)
            except ValueError:
                enabled = ", ".join(sorted(self.models)) or "none"
                raise ValueError(
                    f"FARM_MODEL={self.model!r} is neither a name in FARM_MODELS (enabled: "
                    f"{enabled}) nor a model source: set FARM_MODEL to one of those names, or "
                    "add it to FARM_MODELS as a JSON object of name -> source"
                ) from None
            self.models = {**self.models, self.model: self.model}
        return self

    @field_validator("quality_tiers")
    @classmethod
    def _known_tiers(cls, value: str) -> str:
        tiers = [t.strip() for t in value.split(",") if t.strip()]
        unknown = [t for t in tiers if t not in QUALITY_TIERS]
        if unknown or not tiers:
            raise ValueError(
                f"FARM_QUALITY_TIERS must list some of {', '.join(QUALITY_TIERS)}; got {value!r}"
            )
        return ",".join(tiers)

    @model_validator(mode="after")
    def _prompt_library_reads(self) -> Settings:
        """A styles file or wildcards folder that cannot be read stops the process here."""
        self.prompt_library  # noqa: B018 - read (and kept) now, not at the first request
        return self

    @property
    def prompt_library(self) -> PromptLibrary:
        library = load_prompt_library(self.styles_file, self.wildcards_dir)
        if not self.loras:
            return library
        return replace(library, loras=self.lora_catalog)

    @property
    def lora_catalog(self) -> FileLoraCatalog:
        """One per Settings: what it hashed stays hashed (models/infra/loras.py)."""
        catalog = self.__dict__.get("_lora_catalog")
        if catalog is None:
            catalog = FileLoraCatalog(self.loras, self.models_dir)
            self.__dict__["_lora_catalog"] = catalog
        return catalog

    @property
    def model_bases(self) -> dict[str, str | None]:
        """Each enabled model's family, for the LoRAs built for it (a simulation: any)."""
        kinds = {name: parse_model_source(source).kind for name, source in self.models.items()}
        return {
            name: None if kind == "simulated" else "tiny-sdxl" if kind == "tiny" else "sdxl"
            for name, kind in kinds.items()
        }

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _case_insensitive(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            return value.upper() if info.field_name == "log_level" else value.lower()
        return value

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return normalize_database_url(self.database_url)
        return f"sqlite:///{self.data_dir / 'farm.db'}"

    @property
    def embedded(self) -> bool:
        """No broker configured: the API process also runs the worker."""
        return not self.broker_url

    @property
    def local_storage_dir(self) -> Path:
        return self.storage_dir or self.data_dir / "storage"

    def url_signing_secret(self) -> bytes:
        if self.secret_key:
            return self.secret_key.encode()
        path = self.data_dir / "secret.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(secrets.token_bytes(32))
        return path.read_bytes()

    @property
    def limits(self) -> Limits:
        return Limits(
            default_model=self.model,
            models=frozenset(self.models),
            max_grid_cells=self.max_grid_cells,
            max_prompts=self.max_prompts,
            max_prompt_chars=self.max_prompt_chars,
            max_prompt_chunks=self.max_prompt_chunks,
            max_job_text_chars=self.max_job_text_chars,
            max_seeds=self.max_seeds,
            max_steps=self.max_steps,
            max_bulk_jobs=self.max_bulk_jobs,
            webhook_allow_private=self.webhook_allow_private,
            quality_tiers=frozenset(self.served_tiers),
            library=self.prompt_library,
            max_loras_per_cell=self.max_loras_per_cell,
            model_bases=self.model_bases,
        )

    @property
    def served_tiers(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.quality_tiers.split(",") if t.strip())

    @property
    def models_dir(self) -> Path:
        return self.model_cache_dir or self.data_dir / "models"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
