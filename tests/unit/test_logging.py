"""Service logs: one JSON object per line with the ids of the work in hand, or text."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from pydantic import ValidationError

from models.infra.log_setup import (
    HANDLER_NAME,
    ContextFilter,
    TextFormatter,
    current_log_context,
    json_formatter,
    log_context,
    setup_logging,
)
from models.infra.settings import Settings
from tests.conftest import ApiClient


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    handler.addFilter(ContextFilter())
    logger = logging.getLogger(f"farm.test.{id(stream)}")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_has_the_fields_and_the_context(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = captured
    with log_context(job_id="job-1", shard_id=7, cells=[0, 1]):
        with log_context(cells=[1], ignored=None):
            log.info("rendered %d images", 2, extra={"render_ms": 120})
        log.warning("outer")
    log.info("after")

    inner, outer, after = lines(stream)
    assert {k: inner[k] for k in ("level", "logger", "msg")} == {
        "level": "INFO",
        "logger": log.name,
        "msg": "rendered 2 images",
    }
    assert datetime.fromisoformat(inner["ts"]).tzinfo is not None
    assert (inner["job_id"], inner["shard_id"], inner["cells"]) == ("job-1", 7, [1])
    assert inner["render_ms"] == 120 and "ignored" not in inner
    assert (outer["level"], outer["cells"]) == ("WARNING", [0, 1])
    assert "job_id" not in after
    assert current_log_context() == {}


def test_extra_fields_win_over_the_context(captured: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = captured
    with log_context(job_id="from-context"):
        log.info("x", extra={"job_id": "from-extra"})
    assert lines(stream)[0]["job_id"] == "from-extra"


def test_an_exception_stays_on_its_one_line(captured: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = captured
    try:
        raise ValueError("bad prompt")
    except ValueError:
        log.exception("render failed")
    assert len(stream.getvalue().splitlines()) == 1
    [line] = lines(stream)
    assert line["msg"] == "render failed" and "ValueError: bad prompt" in line["exc_info"]


def test_the_context_belongs_to_the_thread_that_set_it(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = captured
    with log_context(job_id="mine"):
        thread = threading.Thread(target=log.info, args=("other thread",))
        thread.start()
        thread.join()
    assert "job_id" not in lines(stream)[0]


def test_text_format_puts_the_fields_at_the_end_of_the_line() -> None:
    record = logging.LogRecord("worker.x", logging.ERROR, __file__, 1, "failed %s", ("x",), None)
    record.job_id = "job-9"
    text = TextFormatter().format(record)
    assert text.endswith("ERROR   worker.x: failed x job_id=job-9")


@pytest.fixture
def root_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers = handlers
        root.setLevel(level)
        logging.captureWarnings(False)


@pytest.mark.usefixtures("root_restored")
def test_setup_logging_picks_the_format_and_replaces_itself() -> None:
    stream = io.StringIO()  # not a terminal: "auto" means JSON
    setup_logging(Settings(log_level="debug"), stream)
    setup_logging(Settings(log_level="debug"), stream)
    root = logging.getLogger()
    assert [h.get_name() for h in root.handlers].count(HANDLER_NAME) == 1
    assert root.level == logging.DEBUG
    logging.getLogger("farm.test.setup").debug("hello")
    assert json.loads(stream.getvalue())["msg"] == "hello"

    text = io.StringIO()
    setup_logging(Settings(log_format="TEXT", log_level="WARNING"), text)
    logging.getLogger("farm.test.setup").info("dropped")
    logging.getLogger("farm.test.setup").warning("kept")
    assert text.getvalue().rstrip().endswith("WARNING farm.test.setup: kept")


def test_log_settings_fail_loudly() -> None:
    with pytest.raises(ValidationError, match="log_level"):
        Settings(log_level="chatty")
    with pytest.raises(ValidationError, match="log_format"):
        Settings(log_format="yaml")


@pytest.fixture
def request_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("api.requests")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_api_request_lines_are_json_with_the_job_id(
    api: ApiClient, request_log: io.StringIO
) -> None:
    body = {"prompts": ["1girl"], "seeds": [1], "model": "simulated"}
    job = api.client.post("/v1/jobs", json=body, headers=api.auth).json()
    api.client.get(f"/v1/jobs/{job['id']}", headers=api.auth)
    api.client.get("/healthz")  # probes are DEBUG: not at INFO
    api.client.get("/v1/jobs/not-a-job", headers=api.auth)

    created, polled, missing = lines(request_log)
    assert (created["method"], created["path"], created["status"]) == ("POST", "/v1/jobs", 201)
    assert created["job_id"] == job["id"]  # from the Location header
    assert (polled["status"], polled["job_id"]) == (200, job["id"])
    assert polled["duration_ms"] >= 0 and polled["logger"] == "api.requests"
    assert missing["status"] in (404, 422) and "job_id" not in missing
