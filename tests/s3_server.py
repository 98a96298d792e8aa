"""A real S3-compatible server for the archive's tests: moto's standalone S3 server
(`moto[server]`), run as a process of its own and spoken to over HTTP by pyarrow's S3
filesystem, as a deployment's MinIO would be. No MinIO server can be installed here (none
is packaged for PyPI, npm or Debian); moto's server speaks the same S3 protocol."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

# Any keys do for moto; pyarrow reads them from the environment as it does in production.
KEYS = {"AWS_ACCESS_KEY_ID": "fencewatch-test", "AWS_SECRET_ACCESS_KEY": "fencewatch-test"}


@contextmanager
def s3_server() -> Iterator[str]:
    """The endpoint (http://127.0.0.1:port) of an S3 server running until the block ends."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **KEYS},
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    exit_code = proc.poll()
                    raise RuntimeError(f"moto's S3 server did not start ({exit_code})") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)
