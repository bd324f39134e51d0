"""Closed-loop HTTP load: N keep-alive connections, each sends its next request when the
last answer is in. Two generators:

- ``wrk`` (C, the Debian package): cheap on CPU, which matters when the server gets
  the same 2 cores; reports latency percentiles (its ``--latency`` table).
- a raw-socket asyncio client (no HTTP library: httpx would need more CPU than the
  server it measures): used when wrk is not installed.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class LoadResult:
    client: str
    connections: int
    duration_s: float
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    status: dict[int, int]  # asyncio client only; wrk reports non-2xx/3xx as errors
    errors: int


def run_load(
    url: str, headers: dict[str, str], *, connections: int, duration_s: float, client: str
) -> LoadResult:
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "asyncio"
    if client == "wrk":
        return _wrk(url, headers, connections=connections, duration_s=duration_s)
    return asyncio.run(_asyncio_load(url, headers, connections, duration_s))


def _wrk(url: str, headers: dict[str, str], *, connections: int, duration_s: float) -> LoadResult:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    requests = int(_find(r"(\d+) requests in", out))
    errors = int(_find(r"Non-2xx or 3xx responses: (\d+)", out, "0"))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return LoadResult(
        client="wrk",
        connections=connections,
        duration_s=duration_s,
        requests=requests,
        requests_per_s=round(float(_find(r"Requests/sec:\s+([\d.]+)", out)), 1),
        p50_ms=_wrk_ms(_find(r"50%\s+([\d.]+\w+)", out)),
        p99_ms=_wrk_ms(_find(r"99%\s+([\d.]+\w+)", out)),
        status={},
        errors=errors,
    )


def _find(pattern: str, text: str, default: str | None = None) -> str:
    match = re.search(pattern, text)
    if match is None:
        if default is None:
            raise RuntimeError(f"wrk output has no {pattern!r}:\n{text}")
        return default
    return match.group(1)


def _wrk_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]
    return round(float(number) * scale, 2)


async def _asyncio_load(
    url: str, headers: dict[str, str], connections: int, duration_s: float
) -> LoadResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lines = [f"GET {parts.path or '/'} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    latencies: list[float] = []
    status: dict[int, int] = {}
    deadline = time.perf_counter() + duration_s

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                code = int(head[9:12])
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                if length:
                    await reader.readexactly(int(length.group(1)))
                latencies.append(time.perf_counter() - started)
                status[code] = status.get(code, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    return LoadResult(
        client="asyncio",
        connections=connections,
        duration_s=round(elapsed, 2),
        requests=len(latencies),
        requests_per_s=round(len(latencies) / elapsed, 1),
        p50_ms=round(1000 * statistics.median(latencies), 2) if latencies else 0.0,
        p99_ms=round(1000 * p99, 2),
        status=status,
        errors=sum(n for code, n in status.items() if code >= 400),
    )
