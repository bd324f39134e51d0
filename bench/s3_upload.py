"""What a signature-checking S3 costs the tests and a worker: the time to start
SeaweedFS's S3 gateway (``weed server``, as tests/s3_servers.py starts it), and the
wall time and client CPU of one image upload (the lean signed PUT, models/infra/s3_put.py)
against it and against moto's server (its own process, keep-alive), on loopback.

``python -m bench.s3_upload [--uploads 200] [--size-kb 2300] [--starts 3]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from botocore.credentials import Credentials

from bench._common import emit, moto_server
from models.infra.s3_put import SignedPut

# The tests' launcher: the benchmark measures exactly what a test run pays.
from tests.s3_servers import seaweedfs_s3


@contextmanager
def _moto() -> Iterator[SignedPut]:
    with moto_server() as s3:  # accepts any keys
        yield SignedPut(
            credentials=Credentials("bench", "bench"),
            region="us-east-1",
            bucket=s3.bucket,
            endpoint_url=s3.endpoint_url,
        )


@contextmanager
def _seaweedfs() -> Iterator[SignedPut]:
    with TemporaryDirectory() as tmp, seaweedfs_s3(Path(tmp)) as s3:
        yield SignedPut(
            credentials=Credentials(s3.access_key, s3.secret_key),
            region="us-east-1",
            bucket=s3.bucket,
            endpoint_url=s3.endpoint_url,
        )


def _uploads(put: SignedPut, *, count: int, data: bytes) -> dict[str, float]:
    walls: list[float] = []
    cpu0 = time.process_time()
    for i in range(count):
        url = put.url(f"bench/{i:06d}_1024x1024_s{i}.png")
        assert url is not None
        t0 = time.perf_counter()
        put.put(url, data, content_type="image/png")
        walls.append(time.perf_counter() - t0)
    cpu = time.process_time() - cpu0
    return {
        "wall_ms_p50": round(statistics.median(walls) * 1000, 2),
        "wall_ms_mean": round(statistics.fmean(walls) * 1000, 2),
        "client_cpu_ms_per_upload": round(cpu / count * 1000, 2),
    }


def _start_times(starts: int) -> list[float]:
    times: list[float] = []
    for _ in range(starts):
        with TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            with seaweedfs_s3(Path(tmp)):
                times.append(round(time.perf_counter() - t0, 2))
    return times


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--size-kb", type=int, default=2300, help="a 1024² PNG is ~2.2-2.5 MB")
    parser.add_argument("--starts", type=int, default=3)
    args = parser.parse_args(argv)
    data = os.urandom(args.size_kb * 1024)  # incompressible, like a PNG
    result: dict[str, Any] = {"uploads": args.uploads, "size_kb": args.size_kb}
    result["seaweedfs_start_s"] = _start_times(args.starts)
    for name, server in (("moto", _moto), ("seaweedfs", _seaweedfs)):
        with server() as put:
            _uploads(put, count=min(5, args.uploads), data=data)  # warm the connection
            result[name] = _uploads(put, count=args.uploads, data=data)
    emit(
        "s3_upload",
        result,
        f"weed up in {statistics.median(result['seaweedfs_start_s'])} s; one "
        f"{args.size_kb} KB upload: moto {result['moto']['wall_ms_p50']} ms "
        f"({result['moto']['client_cpu_ms_per_upload']} ms CPU), seaweedfs "
        f"{result['seaweedfs']['wall_ms_p50']} ms "
        f"({result['seaweedfs']['client_cpu_ms_per_upload']} ms CPU)",
    )
    return result


if __name__ == "__main__":
    main()
