"""A tenant's content policy: what it may ask for, what every one of its images carries,
how its outputs are screened and how long they are kept.

The operator sets it (``farm tenants policy``, ``PUT /v1/admin/tenants/{name}/policy``).
It is applied at the one submit path (models/service/submit.py), before the limits:

1. ``with_forced_terms``: the forced rating tag is added to every prompt that lacks it,
   the forced negative terms to the negative prompt. The result is the spec that is
   rendered, so ``check_limits`` (length, syntax, 75-token chunks) holds for it;
2. ``check_ratings``: every text a cell encodes (each prompt, under each Prompt S/R
   value) may carry only allowed rating tags; anything more is a 422 naming the prompt;
3. ``job_retention``: a job's time to keep its files, within the tenant's maximum.

Screening (``screening_threshold``) is the worker's: images whose screening score is
above it are held (docs/OPERATIONS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from models.domain.animagine import DEFAULT_NEGATIVE_PROMPT, RATING_TAGS
from models.domain.axes import replace_variants
from models.domain.prompt_syntax import PromptSyntaxError, parse_prompt_attention
from models.domain.spec import FieldError, JobSpec, SpecError
from models.domain.tags import RATING_MODIFIERS, PromptTags, Rating, compose
from models.domain.text import Text

MAX_RETENTION_S: Final = 10 * 365 * 86400  # ten years: anything longer is "forever" (null)
Seconds = Annotated[int, Field(ge=1, le=MAX_RETENTION_S, strict=True)]


@dataclass(frozen=True)
class ContentPolicy:
    """A tenant's policy as the farm applies it; every field None means "no rule"."""

    allowed_ratings: frozenset[str] | None = None  # None: any rating tag
    forced_rating: str | None = None  # added to every prompt that lacks it
    forced_negative: str | None = None  # appended to every negative prompt
    screening_threshold: float | None = None  # hold images scoring above it; None: keep all
    retention_s: int | None = None  # for jobs that ask for none; None: the farm's default
    max_retention_s: int | None = None  # the longest a job may ask for
    monthly_gpu_seconds: float | None = None  # per calendar month (UTC)
    metrics_by_name: bool = False  # Prometheus labels carry the tenant's name, not a hash


OPEN_POLICY: Final = ContentPolicy()


class PolicyIn(BaseModel):
    """The operator's input (admin API and CLI): bounded, every rule optional."""

    model_config = ConfigDict(extra="forbid")

    allowed_ratings: Annotated[list[Rating], Field(min_length=1, max_length=4)] | None = None
    forced_rating: Rating | None = None
    forced_negative: Annotated[Text, Field(min_length=1, max_length=1000)] | None = None
    screening_threshold: Annotated[float, Field(ge=0.0, le=1.0, strict=True)] | None = None
    retention_s: Seconds | None = None
    max_retention_s: Seconds | None = None
    monthly_gpu_seconds: Annotated[float, Field(gt=0, le=1e12)] | None = None
    metrics_by_name: StrictBool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        allowed = self.allowed_ratings
        if allowed is not None and len(set(allowed)) != len(allowed):
            raise ValueError("allowed_ratings: ratings are repeated")
        if self.forced_rating and allowed is not None and self.forced_rating not in allowed:
            raise ValueError(f"forced_rating: {self.forced_rating!r} is not in allowed_ratings")
        if self.forced_negative is not None:
            try:
                parse_prompt_attention(self.forced_negative)
            except PromptSyntaxError as exc:
                raise ValueError(f"forced_negative: {exc}") from None
        if (
            self.retention_s is not None
            and self.max_retention_s is not None
            and self.retention_s > self.max_retention_s
        ):
            raise ValueError("retention_s: longer than max_retention_s")
        return self

    def policy(self) -> ContentPolicy:
        return ContentPolicy(
            allowed_ratings=None
            if self.allowed_ratings is None
            else frozenset(self.allowed_ratings),
            forced_rating=self.forced_rating,
            forced_negative=self.forced_negative,
            screening_threshold=self.screening_threshold,
            retention_s=self.retention_s,
            max_retention_s=self.max_retention_s,
            monthly_gpu_seconds=self.monthly_gpu_seconds,
            metrics_by_name=self.metrics_by_name,
        )


def policy_in(policy: ContentPolicy) -> PolicyIn:
    """The stored policy as the operator's input shape (what the admin API shows)."""
    allowed = policy.allowed_ratings
    return PolicyIn(
        allowed_ratings=None if allowed is None else [r for r in RATING_MODIFIERS if r in allowed],
        forced_rating=policy.forced_rating,  # stored validated: one of the ratings
        forced_negative=policy.forced_negative,
        screening_threshold=policy.screening_threshold,
        retention_s=policy.retention_s,
        max_retention_s=policy.max_retention_s,
        monthly_gpu_seconds=policy.monthly_gpu_seconds,
        metrics_by_name=policy.metrics_by_name,
    )


# -- 1. forced terms -------------------------------------------------------------------


def _tags(text: str) -> set[str]:
    return {t.strip().lower() for t in text.replace("(", ",").replace(")", ",").split(",")}


def _force_rating(entry: str | PromptTags, rating: str) -> str | PromptTags:
    tag = RATING_TAGS[rating]
    if isinstance(entry, PromptTags):
        if entry.rating is None:
            return entry.model_copy(update={"rating": rating})
        if entry.rating == rating:
            return entry
        tags = entry.tags if isinstance(entry.tags, list) else [entry.tags or ""]
        return entry.model_copy(update={"tags": [t for t in tags if t.strip()] + [tag]})
    if set(tag.split(", ")) <= _tags(entry):
        return entry
    return f"{entry.rstrip().rstrip(',')}, {tag}"


def _join(text: str, terms: str) -> str:
    text = text.rstrip().rstrip(",")
    return f"{text}, {terms}" if text else terms


def with_forced_terms(spec: JobSpec, policy: ContentPolicy) -> JobSpec:
    """The spec that is rendered: the forced rating tag in every prompt, the forced
    negative terms after the negative prompt (the card's default when it is null)."""
    changes: dict[str, object] = {}
    if policy.forced_rating is not None:
        changes["prompts"] = [_force_rating(p, policy.forced_rating) for p in spec.prompts]
    if policy.forced_negative:
        negative = DEFAULT_NEGATIVE_PROMPT if spec.negative_prompt is None else spec.negative_prompt
        changes["negative_prompt"] = _join(negative, policy.forced_negative)
    return spec.model_copy(update=changes) if changes else spec


# -- 2. allowed ratings ----------------------------------------------------------------

_MOST_EXPLICIT_FIRST: Final = ("explicit", "nsfw", "sensitive", "safe")
_BRACKETS: Final = "()[]{}\\ \t\n"


def rating_in(text: str) -> str | None:
    """The most explicit rating tag an encoded text carries, however it is written:
    weighted (``(nsfw:1.2)``), bracketed, escaped, with underscores or capitals."""
    tags: set[str] = set()
    for chunk, _weight in parse_prompt_attention(text):
        for tag in chunk.replace("_", " ").split(","):
            tags.add(" ".join(tag.strip(_BRACKETS).lower().split()))
    return next((r for r in _MOST_EXPLICIT_FIRST if r in tags), None)


def check_ratings(spec: JobSpec, policy: ContentPolicy, *, prefix: str = "") -> None:
    """SpecError naming each prompt whose encoded text (under any Prompt S/R value) carries
    a rating tag the policy does not allow. Run after ``check_limits``: the texts are
    bounded, and each is read once per S/R value, as the limits read them."""
    allowed = policy.allowed_ratings
    if allowed is None:
        return
    errors: list[FieldError] = []
    replace = spec.replace_list()
    for i, entry in enumerate(spec.prompts):
        text = compose(entry, quality_tags=spec.quality_tags, position=spec.quality_tags_position)
        for k, variant in enumerate(replace_variants(text, replace)):
            rating = rating_in(variant)
            if rating is None or rating in allowed:
                continue
            field = f"prompts.{i}"
            if isinstance(entry, PromptTags) and entry.rating == rating:
                field += ".rating"
            after = f" (with Prompt S/R value {k}, {replace[k]!r})" if k else ""
            ok = ", ".join(r for r in RATING_MODIFIERS if r in allowed)
            reason = f"rating {rating!r}{after} is not allowed for this tenant (allowed: {ok})"
            errors.append(FieldError(prefix + field, reason))
            break
    if errors:
        raise SpecError(errors)


# -- 3. retention ----------------------------------------------------------------------


def job_retention(
    requested: int | None, policy: ContentPolicy, *, default_s: int, prefix: str = ""
) -> int | None:
    """Seconds a job's files are kept after it finishes (None: forever). A request past
    the tenant's maximum is a SpecError naming ``retention_s``."""
    longest = policy.max_retention_s
    if requested is not None and longest is not None and requested > longest:
        reason = f"{requested} s is longer than this tenant may keep files ({longest} s)"
        raise SpecError([FieldError(prefix + "retention_s", reason)])
    kept = requested or policy.retention_s or default_s or None
    if kept is not None and longest is not None:
        kept = min(kept, longest)
    return kept


def url_lifetime_s(
    *,
    url_expiry_s: int,
    now: datetime,
    expires_at: datetime | None,
    expired_at: datetime | None,
    retention_s: int | None,
) -> int | None:
    """How long a presigned URL to a job's file may live: never past the file's expiry
    (an unfinished job's files live at least ``retention_s`` more). None: no URL."""
    if expired_at is not None:
        return None
    if expires_at is not None:
        left_s = int((expires_at - now).total_seconds())
        return min(url_expiry_s, left_s) if left_s > 0 else None
    return min(url_expiry_s, retention_s) if retention_s else url_expiry_s
