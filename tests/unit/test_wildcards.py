"""Wildcards and variants: the Dynamic Prompts syntax (its docs/SYNTAX.md), from a seed."""

from __future__ import annotations

from collections import Counter

import pytest

from models.domain.wildcards import (
    MAX_DEPTH,
    MAX_EXPANSIONS,
    ResolvedTooLong,
    Resolver,
    WildcardError,
    derived_seed,
    parse_template,
    references,
)

LISTS = {
    "season": ("summer", "autumn", "winter", "spring"),
    "flavours": ("chocolate", "vanilla", "strawberry"),
    "colours-cold": ("blue", "green"),
    "colours-warm": ("red", "yellow"),
    "people": ("__africa__", "{tall|short} __europe__"),
    "africa": ("Zimbabwean", "Namibian"),
    "europe": ("Finnish",),
    "loop": ("__loop__",),
    "animals/cats": ("tabby", "calico"),
}


def outcomes(template: str, seeds: int = 300, **kwargs: object) -> Counter[str]:
    resolver = Resolver(LISTS, **kwargs)  # type: ignore[arg-type]
    return Counter(resolver.resolve(template, seed) for seed in range(seeds))


def test_a_variant_picks_one_option() -> None:
    assert set(outcomes("{summer|autumn|winter|spring} is coming")) == {
        f"{s} is coming" for s in LISTS["season"]
    }


def test_weights_are_relative_and_zero_never_picks() -> None:
    found = outcomes("{3::red|1::blue|0::green}", seeds=2000)
    assert set(found) == {"red", "blue"}
    assert 2.4 < found["red"] / found["blue"] < 3.8


def test_choosing_several_without_repeats() -> None:
    found = outcomes("{2$$chocolate|vanilla|strawberry}")
    assert all(len(set(text.split(", "))) == 2 for text in found)
    assert len(found) == 6  # every ordered pair
    assert set(outcomes("{2$$ and $$a|b|c}")) >= {"a and b", "c and a"}
    assert set(outcomes("{4$$a|b|c}")) == {
        "a, b, c",
        "a, c, b",
        "b, a, c",
        "b, c, a",
        "c, a, b",
        "c, b, a",
    }


def test_ranges_and_omitted_bounds() -> None:
    counts = {len(t.split(", ")) for t in outcomes("{1-2$$a|b|c}")}
    assert counts == {1, 2}
    assert {len(t.split(", ")) for t in outcomes("{-2$$a|b|c}")} == {1, 2}
    assert {len(t.split(", ")) for t in outcomes("{2-$$a|b|c}")} == {2, 3}


def test_wildcards_nested_globbed_and_picked_from() -> None:
    assert set(outcomes("__season__ is coming")) == {f"{s} is coming" for s in LISTS["season"]}
    assert set(outcomes("__people__")) == {
        "Zimbabwean",
        "Namibian",
        "tall Finnish",
        "short Finnish",
    }
    assert set(outcomes("__colours*__")) == {"blue", "green", "red", "yellow"}
    assert set(outcomes("__animals/cats__")) == {"tabby", "calico"}
    picked = outcomes("{2$$__flavours__}")
    assert all(len(set(t.split(", "))) == 2 for t in picked) and len(picked) == 6


def test_the_same_seed_gives_the_same_text() -> None:
    template = "1girl, __season__, {2$$__flavours__}, {a|{b|c}}"
    resolver = Resolver(LISTS)
    first = [resolver.resolve(template, derived_seed(seed, "prompt")) for seed in range(50)]
    again = [Resolver(LISTS).resolve(template, derived_seed(seed, "prompt")) for seed in range(50)]
    assert first == again
    assert len(set(first)) > 10
    assert derived_seed(1, "prompt") != derived_seed(1, "negative") != derived_seed(2, "prompt")


def test_pinned_values_fix_a_list() -> None:
    found = outcomes("__season__ and __season__", fixed={"season": "winter"})
    assert set(found) == {"winter and winter"}


def test_a1111_syntax_passes_through() -> None:
    text = r"(yae miko \(genshin\):1.2), [cow|horse], [a:b:0.5], \{literal\}, long_hair"
    assert set(outcomes(text, seeds=3)) == {text}
    assert set(outcomes("{[cat|dog] ears|tail}")) == {"[cat|dog] ears", "tail"}


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("a {b|c", "never closed"),
        ("__nope__", "unknown wildcard __nope__"),
        ("__nothing*__", "no wildcard list matches"),
        ("__loop__", f"more than {MAX_DEPTH} deep"),
        ("{" * 5000 + "a" + "}" * 5000, "variants nested more than"),
    ],
)
def test_errors_name_the_problem(template: str, message: str) -> None:
    with pytest.raises(WildcardError, match=message):
        Resolver(LISTS).resolve(template, 1)


def test_the_work_and_the_length_are_capped() -> None:
    many = "{a|b}" * (MAX_EXPANSIONS + 1)
    with pytest.raises(WildcardError, match="choices in one text"):
        Resolver(LISTS).resolve(many, 1)
    with pytest.raises(ResolvedTooLong):
        Resolver({"big": ("x" * 500,)}, max_chars=400).resolve("__big__", 1)


def test_references_lists_the_names_a_template_uses() -> None:
    nodes = parse_template("__a__ {x|__b__} {2$$__c__} __d*__ _e_ plain__text")
    assert list(references(nodes)) == ["a", "b", "c", "d*"]
