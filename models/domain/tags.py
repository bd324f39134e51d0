"""Animagine XL 3.1 tag fields and quality presets: how a prompt entry becomes the prompt.

A prompt entry is either a raw string (Danbooru tags, A1111 weights allowed) or a
:class:`PromptTags` object. An object composes in the order the model was trained
on (the card's "Tag Ordering"): subject, character, series, everything else, then
the card's special tags in the card's table order (quality, rating, year,
aesthetic). A quality preset is then put in front (the card's advice) or behind.
The composed text is what is encoded, stored per cell and written to the PNG.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictStr,
    Tag,
)

from models.domain.animagine import QUALITY_TAGS, RATING_TAGS
from models.domain.prompt_syntax import escape_attention
from models.domain.text import Text, check_text

QualityPreset = Literal["none", "standard", "light"]
QualityPosition = Literal["prepend", "append"]

QUALITY_PRESETS: Final[dict[str, str]] = {
    "none": "",
    "standard": QUALITY_TAGS,  # the card's "prepend prompts with ..."
    "light": "best quality",
}
DEFAULT_QUALITY_PRESET: Final = "standard"

# The card's tables, best first.
QualityModifier = Literal[
    "masterpiece",
    "best quality",
    "great quality",
    "good quality",
    "normal quality",
    "low quality",
    "worst quality",
]
RatingModifier = Literal["safe", "sensitive", "nsfw", "explicit"]  # see RATING_TAGS
YearModifier = Literal["newest", "recent", "mid", "early", "oldest"]
AestheticModifier = Literal["very aesthetic", "aesthetic", "displeasing", "very displeasing"]

QUALITY_MODIFIERS: Final = get_args(QualityModifier)
RATING_MODIFIERS: Final = get_args(RatingModifier)
YEAR_MODIFIERS: Final = get_args(YearModifier)
AESTHETIC_MODIFIERS: Final = get_args(AestheticModifier)


def _spelling(value: Any) -> Any:
    """``"Very_Aesthetic"`` -> ``"very aesthetic"``: Danbooru's and the card's spellings."""
    if isinstance(value, str):
        return " ".join(value.replace("_", " ").lower().split())
    return value


PromptText = Text  # no NUL, no lone surrogate: what Postgres can store

Quality = Annotated[QualityModifier, BeforeValidator(_spelling)]
Rating = Annotated[RatingModifier, BeforeValidator(_spelling)]
Year = Annotated[YearModifier, BeforeValidator(_spelling)]
Aesthetic = Annotated[AestheticModifier, BeforeValidator(_spelling)]
TagText = Annotated[StrictStr, Field(max_length=2000), AfterValidator(check_text)]
# A string or a list of strings; the capitalised tags keep error names clean (``tags.1``).
TagsField = Annotated[
    Annotated[TagText, Tag("Text")] | Annotated[list[TagText], Tag("List")],
    Discriminator(lambda value: "List" if isinstance(value, list) else "Text"),
]


def _is_escaped(name: str) -> bool:
    return "\\(" in name or "\\)" in name or "\\[" in name or "\\]" in name


def literal_name(name: str) -> str:
    r"""A character or series name as literal text: ``yae miko (genshin impact)`` ->
    ``yae miko \(genshin impact\)``, unless the name is escaped already."""
    name = name.strip()
    return name if _is_escaped(name) else escape_attention(name)


class PromptTags(BaseModel):
    """A prompt as Animagine's tag fields; every field is optional, one must be set."""

    model_config = ConfigDict(extra="forbid")

    subject: TagText | None = None  # 1girl, 1boy, 2girls, no humans, ...
    character: TagText | None = None  # literal: brackets are escaped
    series: TagText | None = None  # literal: brackets are escaped
    tags: TagsField | None = None  # everything else; A1111 weights allowed
    quality: Quality | None = None
    rating: Rating | None = None
    year: Year | None = None
    aesthetic: Aesthetic | None = None

    def modifier_tags(self) -> list[str]:
        """The card's special tags, in the card's table order."""
        rating = RATING_TAGS[self.rating] if self.rating else None
        return [t for t in (self.quality, rating, self.year, self.aesthetic) if t]

    def compose(self, *, skip: frozenset[str] = frozenset()) -> str:
        """Tags in training order; modifier tags listed in ``skip`` are left out."""
        tags = self.tags if isinstance(self.tags, list) else [self.tags or ""]
        parts = [
            (self.subject or "").strip(),
            literal_name(self.character or ""),
            literal_name(self.series or ""),
            *(t.strip().strip(",").strip() for t in tags),
            *(t for t in self.modifier_tags() if t not in skip),
        ]
        return ", ".join(p for p in parts if p)


def _entry_kind(value: Any) -> str:
    return "PromptTags" if isinstance(value, dict | PromptTags) else "Text"


# A string or a tag object. The tags are capitalised: the API's error names drop them,
# so a bad rating is reported as ``prompts.1.rating``.
PromptEntry = Annotated[
    Annotated[PromptText, Tag("Text")] | Annotated[PromptTags, Tag("PromptTags")],
    Discriminator(_entry_kind),
]


def _preset(value: str) -> str:
    if value not in QUALITY_PRESETS:
        raise ValueError(
            f"must be a boolean or one of {', '.join(map(repr, QUALITY_PRESETS))}; got {value!r}"
        )
    return value


def _quality_kind(value: Any) -> str:
    return "Preset" if isinstance(value, str) else "Bool"


# ``true``/``false`` (the original API) or a preset name.
QualityTagsField = Annotated[
    Annotated[StrictBool, Tag("Bool")]
    | Annotated[
        StrictStr,
        AfterValidator(_preset),
        Tag("Preset"),
        Field(json_schema_extra={"enum": list(QUALITY_PRESETS)}),
    ],
    Discriminator(_quality_kind),
]


def quality_preset(quality_tags: bool | str) -> str:
    """``True`` is the card's standard set, ``False`` none; a preset name is itself."""
    if isinstance(quality_tags, bool):
        return DEFAULT_QUALITY_PRESET if quality_tags else "none"
    return _preset(quality_tags)


def _tag_set(text: str) -> frozenset[str]:
    return frozenset(t.strip() for t in text.split(",") if t.strip())


def compose(
    entry: str | PromptTags,
    *,
    quality_tags: bool | str = True,
    position: QualityPosition = "prepend",
) -> str:
    """The prompt that is encoded and recorded for one prompt entry.

    >>> compose("1girl, solo", quality_tags="light")
    'best quality, 1girl, solo'
    >>> compose(PromptTags(subject="1girl", rating="explicit"), quality_tags=False)
    '1girl, explicit, nsfw'
    """
    preset = QUALITY_PRESETS[quality_preset(quality_tags)]
    # A modifier that the preset already carries is not repeated.
    body = entry.strip() if isinstance(entry, str) else entry.compose(skip=_tag_set(preset))
    parts = [preset, body] if position == "prepend" else [body, preset]
    return ", ".join(p for p in parts if p)


def entry_is_blank(entry: str | PromptTags) -> bool:
    return not (entry.strip() if isinstance(entry, str) else entry.compose())
