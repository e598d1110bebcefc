"""A rank that leaves (or never answers) breaks the group loudly, never silently."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from sealfn.collective import Communicator, DirectoryChannel, TcpChannel
from sealfn.collective.rendezvous import RendezvousServer
from sealfn.errors import PeerLost


def test_tcp_peer_that_closes_is_lost(rendezvous_server: RendezvousServer) -> None:
    group = uuid.uuid4().hex
    channels: dict[int, TcpChannel] = {}

    def join(rank: int) -> None:
        channels[rank] = TcpChannel.join(rendezvous_server.address, group, rank, 2, timeout=5)

    threads = [threading.Thread(target=join, args=(r,)) for r in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    channels[1].close()
    with pytest.raises(PeerLost, match=r"rank 1 (closed|is gone)"):
        Communicator(channels[0]).allreduce(np.ones(4))
    with pytest.raises(PeerLost):  # and stays lost
        channels[0].recv(1)
    channels[0].close()


def test_a_group_that_never_assembles_is_lost() -> None:
    with RendezvousServer(timeout=0.2) as server, pytest.raises(PeerLost):
        TcpChannel.join(server.address, uuid.uuid4().hex, 0, 2, timeout=2)


def test_directory_recv_times_out(tmp_path: Path) -> None:
    channel = DirectoryChannel(tmp_path, "g", 0, 2, timeout=0.05)
    with pytest.raises(PeerLost, match="rank 1 staged nothing"):
        channel.recv(1)


def test_ranks_outside_the_group_are_refused(tmp_path: Path) -> None:
    channel = DirectoryChannel(tmp_path, "g", 0, 2)
    with pytest.raises(ValueError, match="cannot talk to rank 2"):
        channel.send(2, b"")
    with pytest.raises(ValueError, match="cannot talk to rank 0"):
        channel.send(0, b"")
