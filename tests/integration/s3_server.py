"""An S3-compatible server on loopback for the recording store's tests: moto in server
mode, in a thread of the test process. Clients get an explicit endpoint URL and dummy
credentials, and AWS_EC2_METADATA_DISABLED, so no S3 client here ever asks a metadata
service or a public endpoint."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

from tests.conftest import free_port

BUCKET = "rrstream-test"
CLIENT_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    def store_env(self, prefix: str) -> dict[str, str]:
        """The settings of a recording store in the test bucket under `prefix`."""
        return {**CLIENT_ENV,
                "RRSTREAM_RECORDINGS_URL": f"s3://{BUCKET}/{prefix}",
                "RRSTREAM_RECORDINGS_OPTIONS": json.dumps({"endpoint_url": self.endpoint_url})}

    def keys(self, prefix: str) -> list[str]:
        """Every object under `prefix` in the test bucket."""
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.endpoint_url, **_credentials())
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _credentials() -> dict[str, str]:
    return {"aws_access_key_id": CLIENT_ENV["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": CLIENT_ENV["AWS_SECRET_ACCESS_KEY"],
            "region_name": CLIENT_ENV["AWS_DEFAULT_REGION"]}


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint, **_credentials()).create_bucket(Bucket=BUCKET)
        yield S3Server(endpoint)
    finally:
        server.stop()


__all__ = ["BUCKET", "CLIENT_ENV", "S3Server", "s3_server"]
