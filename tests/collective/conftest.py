from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from collective_groups import ChannelFactory, directory_factory, sealed_factory, tcp_factory

from sealfn.collective.channel import Channel
from sealfn.collective.rendezvous import RendezvousServer


@pytest.fixture(scope="module")
def rendezvous_server() -> Iterator[RendezvousServer]:
    with RendezvousServer() as server:
        yield server


def ray_factory() -> ChannelFactory:
    from sealfn.collective.raychannel import RayChannel, create_mailbox

    mailboxes: dict[str, Any] = {}
    lock = threading.Lock()

    def make(group: str, rank: int, size: int) -> Channel:
        with lock:
            if group not in mailboxes:
                mailboxes[group] = create_mailbox()
        return RayChannel(mailboxes[group], rank, size, timeout=20)

    return make


@pytest.fixture(
    params=["tcp", "directory", "sealed-tcp", pytest.param("ray", marks=pytest.mark.ray)]
)
def channel_factory(
    request: pytest.FixtureRequest, rendezvous_server: RendezvousServer, tmp_path: Path
) -> ChannelFactory:
    if request.param == "tcp":
        return tcp_factory(rendezvous_server)
    if request.param == "directory":
        return directory_factory(tmp_path / "stage")
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
        return ray_factory()
    return sealed_factory(tcp_factory(rendezvous_server), os.urandom(32))
