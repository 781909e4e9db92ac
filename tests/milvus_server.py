"""A Milvus server process on a loopback port, for the tests of ``QA_STORE=http://host:port``: Milvus Lite 2.5's C++
server (`milvus-lite==2.5.1`, which `make test` installs into .venv-milvus-server), serving gRPC on TCP as Milvus
Standalone does. Its clients are separate processes and machines: what the `milvus://` tests (Milvus Lite inside the
process) cannot show."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from conftest import REPO, free_port

VENV = REPO / ".venv-milvus-server"


def server_binary() -> Path:
    """The server executable; an error naming the make target when it is not installed (never a skip)."""
    found = sorted(VENV.glob("lib/python*/site-packages/milvus_lite/lib/milvus"))
    if not found:
        raise RuntimeError(f"no Milvus server in {VENV}: run `make .venv-milvus-server/.installed` (or `make test`)")
    return found[-1]


@contextmanager
def milvus_server(folder: Path, timeout: float = 60.0) -> Iterator[str]:
    """Start a server keeping its data in ``folder``; yields its ``http://127.0.0.1:PORT`` URL, stops it after."""
    binary = server_binary()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(filter(None, [str(binary.parent),
                                                                        os.environ.get("LD_LIBRARY_PATH")]))}
    log = open(folder / "server.log", "wb")
    proc = subprocess.Popen([str(binary), str(folder / "milvus.db"), f"127.0.0.1:{port}", "ERROR"], cwd=folder,
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the Milvus server exited with {proc.returncode}: "
                                   f"{(folder / 'server.log').read_text(errors='replace')[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Milvus server did not listen on port {port} in {timeout:.0f} s")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
