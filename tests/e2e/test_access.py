"""Access: the gateway listens only where it was told to, its children listen nowhere, and the
admin token never reaches a log."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import psutil

if TYPE_CHECKING:
    from sealfn_testing import Models, Server


def _listening(pid: int) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every listening inet socket of ``pid`` and its descendants."""
    parent = psutil.Process(pid)
    found = []
    for process in [parent, *parent.children(recursive=True)]:
        for conn in process.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                found.append((conn.laddr.ip, conn.laddr.port, process.pid))
    return found


def test_only_the_configured_host_and_port_listen(server: Server, models: Models) -> None:
    server.client.deploy("access-mlp", models.mlp)
    try:
        server.client.infer("access-mlp", {"input": np.ones((1, 16), np.float32)})  # warm
        port = int(server.url.rsplit(":", 1)[1])
        assert _listening(server.process.pid) == [("127.0.0.1", port, server.process.pid)]
    finally:
        server.client.undeploy("access-mlp")


def test_the_admin_token_is_never_logged(server: Server) -> None:
    server.client.status()
    assert server.admin_token not in server.log()
