"""The spine: HTTP submit -> Postgres -> Redis -> `farm worker` -> S3 -> poll to done."""

from __future__ import annotations

import hashlib
import io
import time
import uuid

import httpx
import redis
from PIL import Image

from models.db.tables import Item, Shard
from models.domain.infotext import parse_infotext
from models.infra.queue import CeleryPublisher, make_celery, queue_name
from tests.integration.conftest import Farm
from tests.s3_servers import client_for

GRID = {
    "name": "spine",
    "prompts": ["1girl, solo, smile", "1boy, solo, outdoors"],
    "buckets": ["1024x1024", "13:19", "1216x832"],
    "seeds": [11, 12],
    "steps": 2,
    "model": "tiny-sdxl",
}


def _objects(farm: Farm, job_id: str) -> dict[str, bytes]:
    s3 = client_for(farm.settings)
    prefix = f"{farm.settings.s3_prefix}/"
    listing = s3.list_objects_v2(Bucket=farm.settings.s3_bucket, Prefix=prefix)
    keys = [  # the images themselves, not the thumbnails, sheets or gallery beside them
        o["Key"]
        for o in listing.get("Contents", [])
        if f"/{job_id}/" in o["Key"] and o["Key"].endswith(".png") and "/thumbs/" not in o["Key"]
    ]
    return {k: s3.get_object(Bucket=farm.settings.s3_bucket, Key=k)["Body"].read() for k in keys}


def test_grid_renders_end_to_end(farm: Farm) -> None:
    with farm.client() as client:
        started = time.perf_counter()
        job = client.submit(GRID)
        submit_ms = (time.perf_counter() - started) * 1000
        assert job["total"] == 12
        final = client.wait(job["id"], poll_s=0.2, timeout_s=300)
        elapsed = time.perf_counter() - started
        images = list(client.images(job["id"]))
    assert final["status"] == "succeeded", final
    assert (final["done"], final["failed"], final["progress"]) == (12, 0, 1.0)
    assert final["started_at"] and final["finished_at"]
    print(f"\n12-image tiny grid: submit {submit_ms:.0f} ms, {12 / elapsed:.2f} images/s")

    objects = _objects(farm, job["id"])
    assert len(objects) == 12
    assert len(images) == 12
    for image in images:
        assert image["status"] == "done"
        data = objects[image["key"]]
        assert hashlib.sha256(data).hexdigest() == image["sha256"]
        png = Image.open(io.BytesIO(data))
        assert png.size == (image["width"], image["height"])
        assert image["bucket"] == f"{image['width']}x{image['height']}"
        params = parse_infotext(png.info["parameters"])
        assert params.seed == image["seed"]
        assert (params.width, params.height) == png.size
        assert params.prompt == image["prompt"]
        assert params.steps == 2 and params.sampler == "euler_a" and params.model == "tiny-sdxl"
        assert params.prompt.startswith("masterpiece, best quality, very aesthetic, absurdres, ")
        assert params.negative_prompt.startswith("nsfw, lowres, (bad)")
        # The presigned URL downloads the same bytes over plain HTTP.
        assert httpx.get(image["url"]).content == data
    sizes = {(i["width"], i["height"]) for i in images}
    assert sizes == {(1024, 1024), (832, 1216), (1216, 832)}


def test_same_spec_same_pixels_and_seeds_differ(farm: Farm) -> None:
    spec = {**GRID, "prompts": ["1girl, red hair"], "buckets": ["1:1"], "seeds": [5, 6]}
    with farm.client() as client:
        first = client.submit(spec)
        second = client.submit(spec)
        for job in (first, second):
            assert client.wait(job["id"], poll_s=0.2, timeout_s=300)["status"] == "succeeded"
        a = list(client.images(first["id"]))
        b = list(client.images(second["id"]))
    assert [i["sha256"] for i in a] == [i["sha256"] for i in b]
    assert a[0]["key"] != b[0]["key"]  # separate jobs, separate objects
    pixels = [Image.open(io.BytesIO(httpx.get(i["url"]).content)).tobytes() for i in a]
    assert pixels[0] != pixels[1]


def test_a_duplicate_message_renders_nothing_twice(farm: Farm) -> None:
    spec = {**GRID, "prompts": ["1girl"], "buckets": ["1:1"], "seeds": [1, 2]}
    with farm.client() as client:
        job = client.submit(spec)
        publisher = CeleryPublisher(make_celery(farm.settings))
        with farm.sessions() as sessions, sessions() as session:
            shard_ids = list(
                session.scalars(
                    Shard.__table__.select()
                    .with_only_columns(Shard.id)
                    .where(Shard.job_id == uuid.UUID(job["id"]))
                )
            )
        assert len(shard_ids) == 1
        publisher.publish(model="tiny-sdxl", shard_ids=shard_ids * 2)  # two more copies
        assert client.wait(job["id"], poll_s=0.2, timeout_s=300)["status"] == "succeeded"
    # Let the worker drain the extra copies, then check nothing ran twice.
    with redis.Redis.from_url(farm.settings.broker_url) as broker:
        deadline = time.monotonic() + 60
        while broker.llen(queue_name("tiny-sdxl")) or broker.hlen("unacked"):
            assert time.monotonic() < deadline, "duplicate messages were never consumed"
            time.sleep(0.1)
    with farm.sessions() as sessions, sessions() as session:
        shard = session.get(Shard, shard_ids[0])
        assert shard is not None and shard.attempts == 1 and shard.status == "done"
        items = session.scalars(
            Item.__table__.select()
            .with_only_columns(Item.attempts)
            .where(Item.job_id == uuid.UUID(job["id"]))
        ).all()
    assert list(items) == [1, 1]
    assert len(_objects(farm, job["id"])) == 2
