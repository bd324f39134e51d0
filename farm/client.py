"""A small Python client for the farm's HTTP API (used by the CLI; importable by users)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

TERMINAL = frozenset({"succeeded", "partial", "failed", "cancelled"})


class FarmApiError(Exception):
    """The API said no; ``message`` and ``detail`` are the API's own words."""

    def __init__(self, status: int, message: str, detail: list[dict[str, Any]]) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.detail = detail


class FarmClient:
    def __init__(self, base_url: str, api_key: str, *, timeout_s: float = 30.0) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_s,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FarmClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            self._raise(response)
        return response.json()

    @staticmethod
    def _raise(response: httpx.Response) -> None:
        try:
            body = response.json()
            message, detail = body.get("message", response.text), body.get("detail", [])
        except ValueError:
            message, detail = response.text, []
        raise FarmApiError(response.status_code, message, detail)

    def submit(self, spec: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        result: dict[str, Any] = self._request("POST", "/v1/jobs", json=spec, headers=headers)
        return result

    def submit_bulk(
        self, specs: list[dict[str, Any]], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        result: dict[str, Any] = self._request(
            "POST", "/v1/jobs/bulk", json={"jobs": specs}, headers=headers
        )
        return result

    def job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/v1/jobs/{job_id}")
        return result

    def jobs(self, *, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        page: dict[str, Any] = self._request("GET", "/v1/jobs", params=params)
        items: list[dict[str, Any]] = page["items"]
        return items

    def images(self, job_id: str, *, page_size: int = 500) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if cursor:
                params["cursor"] = cursor
            page = self._request("GET", f"/v1/jobs/{job_id}/images", params=params)
            yield from page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return

    def absolute(self, path: str) -> str:
        """A link of the API's (``links`` are paths) as a full URL."""
        return str(self._http.base_url.join(path))

    def contact_sheets(self, job_id: str) -> list[dict[str, Any]]:
        """One per prompt: ``{prompt_index, prompt, url}`` (url: a path on the API)."""
        page: dict[str, Any] = self._request("GET", f"/web/jobs/{job_id}/sheets")
        items: list[dict[str, Any]] = page["items"]
        return items

    def manifest(self, job_id: str) -> dict[str, Any]:
        """The job's manifest.json (written when the job ends)."""
        result: dict[str, Any] = self._request("GET", f"/web/jobs/{job_id}/files/manifest.json")
        return result

    def file(self, path: str) -> bytes:
        """A file of a job's folder by its link (a gallery, a sheet), following redirects."""
        response = self._http.get(path, follow_redirects=True)
        if response.status_code >= 400:
            self._raise(response)
        return response.content

    def wait_for_file(self, path: str, *, timeout_s: float = 30.0, poll_s: float = 0.25) -> str:
        """Wait until a link answers (the gallery is written just after a job ends);
        returns its full URL either way."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._http.get(path).status_code == 200:
                break
            time.sleep(poll_s)
        return self.absolute(path)

    def cancel(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"/v1/jobs/{job_id}/cancel")
        return result

    def pause(self, job_id: str) -> dict[str, Any]:
        """No new shard starts; shards in flight finish."""
        result: dict[str, Any] = self._request("POST", f"/v1/jobs/{job_id}/pause")
        return result

    def resume(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"/v1/jobs/{job_id}/resume")
        return result

    def set_priority(self, job_id: str, priority: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "PATCH", f"/v1/jobs/{job_id}", json={"priority": priority}
        )
        return result

    def refine(
        self,
        job_id: str,
        *,
        cells: list[int] | None = None,
        where: str | dict[str, Any] | None = None,
        top: int | None = None,
        per_prompt: bool = False,
        hires: bool | dict[str, Any] | None = None,
        more_like: int | None = None,
        overrides: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A child job from cells of ``job_id`` (``POST /v1/jobs/{id}/refine``): select
        them (``cells``, ``where``, ``top``) and say what changes (``hires``,
        ``more_like``, ``overrides`` of grid fields: the request's ``set``)."""
        body = {
            "cells": cells,
            "where": where,
            "top": top,
            "per_prompt": per_prompt or None,
            "hires": hires,
            "more_like": more_like,
            "set": overrides or None,
            **extra,
        }
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        result: dict[str, Any] = self._request(
            "POST",
            f"/v1/jobs/{job_id}/refine",
            json={k: v for k, v in body.items() if v is not None},
            headers=headers,
        )
        return result

    def delete(self, job_id: str) -> None:
        """A finished job, its cells and (by the next sweep) its stored files."""
        response = self._http.delete(f"/v1/jobs/{job_id}")
        if response.status_code >= 400:
            self._raise(response)

    def usage(
        self, *, start: str | None = None, end: str | None = None, group_by: str = "day"
    ) -> dict[str, Any]:
        """GPU seconds from the ledger (``GET /v1/usage``)."""
        params = {"group_by": group_by, "from": start, "to": end}
        result: dict[str, Any] = self._request(
            "GET", "/v1/usage", params={k: v for k, v in params.items() if v is not None}
        )
        return result

    def wait(
        self,
        job_id: str,
        *,
        poll_s: float = 0.5,
        timeout_s: float | None = None,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the job reaches a terminal status; returns the last view of it."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if on_update is not None:
                on_update(job)
            if job["status"] in TERMINAL:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s} s")
            time.sleep(poll_s)
