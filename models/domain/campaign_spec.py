"""What a client asks for when it schedules a grid: the campaign, validated field by field.

The inner ``spec`` is a ``JobSpec`` and is checked exactly like a job
(``check_campaign`` runs ``check_limits`` with the prefix ``spec.``), so errors
name ``spec.buckets``, ``spec.prompts.3``, ... Type and value rules live on the
models; the operator's limits, which need settings, in ``check_campaign``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AliasChoices,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
)

from models.domain.limits import Limits, check_limits
from models.domain.prompt_chunks import TokenCounter
from models.domain.refine import RefineIn, check_request
from models.domain.schedule.cron import parse_schedule
from models.domain.schedule.instants import in_range, validate_timezone
from models.domain.schedule.plan import DEFAULT_CATCHUP_WINDOW, MIN_CATCHUP_WINDOW
from models.domain.schedule.policies import OverlapPolicy
from models.domain.seed_policy import SeedPolicy
from models.domain.spec import FieldError, JobSpec, SpecError, WebhookUrl
from models.domain.text import check_text
from models.domain.webhook_urls import private_url_reason

# Each bound fits its column (models/db/tables.py: String(200), String(64), int32).
MAX_IMAGES_PER_RUN = 1_000_000
MAX_CATCHUP_WINDOW_S = 10 * 365 * 24 * 3600  # ten years
MAX_JITTER_S = 24 * 3600


def _zone_name(value: str) -> str:
    return validate_timezone(value).key


# The length is checked on the string itself, before the NUL / surrogate check.
Name = Annotated[StrictStr, Field(min_length=1, max_length=200), AfterValidator(check_text)]
CronText = Annotated[
    StrictStr, Field(max_length=200), AfterValidator(check_text), AfterValidator(parse_schedule)
]
TimeZone = Annotated[
    StrictStr, Field(max_length=64), AfterValidator(check_text), AfterValidator(_zone_name)
]
ImagesPerRun = Annotated[StrictInt, Field(ge=1, le=MAX_IMAGES_PER_RUN)]
# Years 2000-2999: date arithmetic near datetime's own limits would overflow.
Instant = Annotated[AwareDatetime, AfterValidator(in_range)]
CatchupWindow = Annotated[
    StrictInt, Field(ge=int(MIN_CATCHUP_WINDOW.total_seconds()), le=MAX_CATCHUP_WINDOW_S)
]
Jitter = Annotated[StrictInt, Field(ge=0, le=MAX_JITTER_S)]
_CATCHUP_NAMES = Field(validation_alias=AliasChoices("catchup_window_s", "catchup_window"))
_JITTER_NAMES = Field(validation_alias=AliasChoices("jitter_s", "jitter"))


class CampaignIn(BaseModel):
    """A campaign: render ``spec`` at every tick of ``schedule`` in ``timezone``."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    schedule: CronText  # 5-field cron or an alias such as @daily
    timezone: TimeZone = "UTC"  # IANA name
    spec: JobSpec
    enabled: StrictBool = True
    seed_policy: SeedPolicy = SeedPolicy.FIXED
    max_images_per_run: ImagesPerRun | None = None
    end_at: Instant | None = None
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    catchup_window_s: Annotated[CatchupWindow, _CATCHUP_NAMES] = int(
        DEFAULT_CATCHUP_WINDOW.total_seconds()
    )
    coalesce: StrictBool = True  # after an outage, run the latest missed tick only
    pause_on_failure: StrictBool = False
    jitter_s: Annotated[Jitter, _JITTER_NAMES] = 0
    webhook_url: WebhookUrl | None = None  # job.completed of every run's job
    # Once a run's job finishes: a child job refining its cells (docs/CAMPAIGNS.md).
    refine: RefineIn | None = None


class CampaignPatch(BaseModel):
    """A partial update: the fields given replace the campaign's (``spec`` as a whole).

    Each field is checked as in ``CampaignIn``; ``null`` for a required field is
    refused when the result is validated as a whole (``apply_to``).
    """

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    schedule: CronText | None = None
    timezone: TimeZone | None = None
    spec: JobSpec | None = None
    enabled: StrictBool | None = None
    seed_policy: SeedPolicy | None = None
    max_images_per_run: ImagesPerRun | None = None
    end_at: Instant | None = None
    overlap: OverlapPolicy | None = None
    catchup_window_s: Annotated[CatchupWindow | None, _CATCHUP_NAMES] = None
    coalesce: StrictBool | None = None
    pause_on_failure: StrictBool | None = None
    jitter_s: Annotated[Jitter | None, _JITTER_NAMES] = None
    webhook_url: WebhookUrl | None = None
    refine: RefineIn | None = None

    def apply_to(self, current: dict[str, Any]) -> CampaignIn:
        """The campaign after this patch, validated as a whole (errors name the field)."""
        changes = self.model_dump(mode="json", exclude_unset=True)
        return CampaignIn.model_validate({**current, **changes})


class TriggerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap: OverlapPolicy | None = None  # default: the campaign's policy


class BackfillIn(BaseModel):
    """Render the ticks in ``[start, end)`` that have no job yet."""

    model_config = ConfigDict(extra="forbid")

    start: Instant
    end: Instant
    dry_run: StrictBool = False  # only say which runs and seeds the range would have


def check_campaign(
    campaign: CampaignIn, limits: Limits, counter: TokenCounter | None = None
) -> None:
    """Raise ``SpecError`` naming each field that breaks the operator's limits."""
    errors: list[FieldError] = []
    try:
        check_limits(campaign.spec, limits, counter=counter, prefix="spec.")
    except SpecError as exc:
        errors.extend(exc.errors)
    cells = campaign.spec.cell_count(limits.library)
    if campaign.max_images_per_run is not None and cells > campaign.max_images_per_run:
        errors.append(
            FieldError(
                "max_images_per_run",
                f"the spec renders {cells} images per run, more than {campaign.max_images_per_run}",
            )
        )
    if campaign.refine is not None:  # its selection and changes, before any run needs them
        try:
            check_request(campaign.refine)
        except SpecError as exc:
            errors.extend(FieldError(f"refine.{e.field}", e.reason) for e in exc.errors)
    if campaign.webhook_url is not None:
        reason = private_url_reason(
            campaign.webhook_url, allow_private=limits.webhook_allow_private
        )
        if reason:
            errors.append(FieldError("webhook_url", reason))
    if errors:
        raise SpecError(errors)
