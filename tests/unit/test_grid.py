from __future__ import annotations

import pytest

from models.domain.animagine import DEFAULT_NEGATIVE_PROMPT, QUALITY_TAGS
from models.domain.buckets import BUCKETS, parse_bucket
from models.domain.grid import expand, plan_shards, resolve
from models.domain.spec import JobSpec


def test_the_card_has_nine_buckets_all_multiples_of_64() -> None:
    assert len(BUCKETS) == 9
    assert all(b.width % 64 == 0 and b.height % 64 == 0 for b in BUCKETS)
    # Each carries its cost for the dry run's estimate: within 10% of its pixel share
    # of the 1024² bucket's (the derivation in models/domain/buckets.py).
    square = parse_bucket("1024x1024")
    for b in BUCKETS:
        share = b.width * b.height / (square.width * square.height)
        assert 0.9 * share * square.seconds_28 < b.seconds_28 <= 1.1 * share * square.seconds_28
    assert {b.name for b in BUCKETS} >= {"1024x1024", "832x1216", "640x1536"}


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("832x1216", "832x1216"),
        ("13:19", "832x1216"),
        ("1216X832", "1216x832"),
        ("1:1", "1024x1024"),
        (" 7:4 ", "1344x768"),
        ("640×1536", "640x1536"),
    ],
)
def test_buckets_by_size_or_aspect_name(value: str, name: str) -> None:
    assert parse_bucket(value).name == name


def test_unknown_bucket_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="1024x1024 \\(1:1\\)"):
        parse_bucket("1000x1000")


def test_defaults_come_from_the_model_card() -> None:
    spec = JobSpec(prompts=["1girl, solo"])
    grid = resolve(spec, default_model="animagine-xl-3.1")
    assert grid.prompts == [f"{QUALITY_TAGS}, 1girl, solo"]
    assert grid.negative_prompt == DEFAULT_NEGATIVE_PROMPT
    settings = grid.settings
    assert (settings["steps"], settings["guidance_scale"], settings["sampler"]) == (
        28,
        7.0,
        "euler_a",
    )
    assert grid.buckets == ["1024x1024"]
    assert grid.model == "animagine-xl-3.1"
    assert len(grid.seeds) == 1 and 0 <= grid.seeds[0] < 2**32  # -1 became a real seed


def test_quality_tags_off_and_explicit_negative() -> None:
    spec = JobSpec(prompts=["1boy"], quality_tags=False, negative_prompt="")
    grid = resolve(spec, default_model="m")
    assert grid.prompts == ["1boy"]
    assert grid.negative_prompt == ""


def test_expansion_order_is_prompt_then_bucket_then_seed() -> None:
    spec = JobSpec(
        prompts=["a", "b"], buckets=["1:1", "13:19", "19:13"], seeds=[5, 6], quality_tags=False
    )
    cells = expand(resolve(spec, default_model="m"))
    assert len(cells) == 12 == spec.cell_count()
    assert [c.index for c in cells] == list(range(12))
    assert [(c.prompt, c.bucket, c.seed) for c in cells[:4]] == [
        ("a", "1024x1024", 5),
        ("a", "1024x1024", 6),
        ("a", "832x1216", 5),
        ("a", "832x1216", 6),
    ]
    assert (cells[-1].prompt, cells[-1].bucket, cells[-1].seed) == ("b", "1216x832", 6)
    assert (cells[2].width, cells[2].height) == (832, 1216)


def test_seed_range_expands() -> None:
    spec = JobSpec.model_validate({"prompts": ["a"], "seeds": {"start": 10, "count": 3}})
    assert spec.seed_list() == [10, 11, 12]


def test_shards_share_a_bucket_and_respect_the_batch_size() -> None:
    spec = JobSpec(prompts=["a", "b", "c"], buckets=["1:1", "13:19"], seeds=[1, 2, 3])
    cells = expand(resolve(spec, default_model="m"))
    shards = plan_shards(cells, batch_size=4)
    by_index = {c.index: c for c in cells}
    covered = sorted(i for s in shards for i in s.cell_indices)
    assert covered == list(range(18))
    for shard in shards:
        assert 1 <= len(shard.cell_indices) <= 4
        assert {by_index[i].bucket for i in shard.cell_indices} == {shard.bucket}
    # 9 cells per bucket -> 3 shards each (4 + 4 + 1)
    assert len(shards) == 6
    assert [s.index for s in shards] == list(range(6))


def test_prompts_of_different_text_batch_together() -> None:
    spec = JobSpec(prompts=["a", "b", "c", "d"], seeds=[1])
    shards = plan_shards(expand(resolve(spec, default_model="m")), batch_size=8)
    assert len(shards) == 1 and shards[0].cell_indices == [0, 1, 2, 3]
