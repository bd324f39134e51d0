"""<lora:...> in the text pipeline: read after styles, wildcards and S/R, taken out of
what is encoded (every limit holds on that), written back as A1111 writes it."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from models.domain.infotext import RenderParameters, format_infotext, parse_infotext
from models.domain.loras import (
    LoraCatalog,
    LoraInfo,
    LoraUse,
    merge_loras,
    prompt_loras,
    without_extra_networks,
)
from models.domain.prompt_pipeline import DEFAULT_LIBRARY
from models.domain.prompt_schedule import prompt_schedule
from tests.a1111_infotext import parse_generation_parameters

HASHES = {"ink": "a" * 64, "flat": "b" * 64}


class Catalog(LoraCatalog):
    """Two enabled LoRAs, as models/infra/loras.py would read them."""

    def __getitem__(self, name: str) -> LoraInfo:
        return LoraInfo(name, f"/loras/{name}.safetensors", HASHES[name], "sdxl")

    def __iter__(self) -> Iterator[str]:
        return iter(HASHES)

    def __len__(self) -> int:
        return len(HASHES)


def test_tags_are_read_and_taken_out_as_a1111_does() -> None:
    text = "1girl, <lora:ink:0.6>, [smile:<lora:flat>:3]"
    assert prompt_loras(text) == [LoraUse("ink", 0.6), LoraUse("flat", 1.0)]
    assert without_extra_networks(text) == "1girl, , [smile::3]"
    assert [s.text for s in prompt_schedule(text, 6)] == ["1girl, , smile", "1girl, , "]
    assert merge_loras([LoraUse("ink")], [LoraUse("flat")]) == (LoraUse("flat"), LoraUse("ink"))


@settings(max_examples=60, derandomize=True, database=None, deadline=None)
@given(
    words=st.lists(st.sampled_from(["1girl", "smile", "(red:1.2)", "[a|b]"]), max_size=6),
    tags=st.lists(
        st.tuples(st.sampled_from(sorted(HASHES)), st.floats(-5, 5).map(lambda w: round(w, 2))),
        max_size=2,
        unique_by=lambda t: t[0],
    ),
)
def test_encoded_texts_never_hold_a_tag_and_infotext_round_trips(
    words: list[str], tags: list[tuple[str, float]]
) -> None:
    prompt = ", ".join([*words, *(f"<lora:{n}:{w}>" for n, w in tags)])
    assert all("<lora" not in s.text for s in prompt_schedule(prompt, 4))
    loras = tuple(sorted((LoraUse(n, w, HASHES[n]) for n, w in tags), key=lambda u: u.name))
    params = RenderParameters(
        prompt=prompt,
        negative_prompt="lowres",
        steps=4,
        sampler="euler_a",
        guidance_scale=7.0,
        seed=1,
        width=1024,
        height=1024,
        model="animagine-xl-3.1",
        loras=loras,
    )
    text = format_infotext(params)
    back = parse_infotext(text)
    assert [(u.name, u.weight, u.sha256) for u in back.loras] == [
        (u.name, u.weight, u.short_hash) for u in loras
    ]
    assert back.prompt == prompt
    if loras:
        a1111 = parse_generation_parameters(text)["Lora hashes"]
        assert a1111 == ", ".join(f"{u.name}: {u.short_hash}" for u in loras)


def test_the_spec_loras_are_appended_to_the_infotext_prompt() -> None:
    params = RenderParameters(
        prompt="1girl, <lora:ink:0.5>",
        negative_prompt="",
        steps=4,
        sampler="euler_a",
        guidance_scale=7.0,
        seed=1,
        width=1024,
        height=1024,
        model="animagine-xl-3.1",
        loras=(LoraUse("flat", 0.8, HASHES["flat"]), LoraUse("ink", 0.5, HASHES["ink"])),
    )
    assert format_infotext(params).startswith("1girl, <lora:ink:0.5> <lora:flat:0.8>\n")


def test_limits_hold_on_the_text_without_its_tags() -> None:
    """A prompt at the chunk limit stays at it with tags added: they are not encoded."""
    from dataclasses import replace

    from models.domain.limits import Limits, check_limits
    from models.domain.spec import JobSpec

    limits = Limits(
        default_model="m",
        models=frozenset({"m"}),
        max_prompt_chunks=1,
        library=replace(DEFAULT_LIBRARY, loras=Catalog()),
        model_bases={"m": "sdxl"},
    )
    words = ", ".join(["smile"] * 30)
    tagged = words + ", " + " ".join(["<lora:ink:1>", "<lora:flat:0.5>"] * 1)
    spec = JobSpec(prompts=[tagged], quality_tags=False, seeds=[1])
    assert max(check_limits(spec, limits).values()) == 1
