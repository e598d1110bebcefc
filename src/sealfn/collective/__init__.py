"""FMI-style collectives between function instances: a communicator over pluggable channels."""

from sealfn.collective.channel import Channel
from sealfn.collective.comm import Communicator, Op
from sealfn.collective.costmodel import ChannelProfile, choose_channel
from sealfn.collective.groupkey import ReleasedModelGroupKey, SealedChannel, derive_group_key
from sealfn.collective.mediated import DirectoryChannel
from sealfn.collective.rendezvous import RendezvousServer
from sealfn.collective.tcp import TcpChannel

__all__ = [
    "Channel",
    "ChannelProfile",
    "Communicator",
    "DirectoryChannel",
    "Op",
    "ReleasedModelGroupKey",
    "RendezvousServer",
    "SealedChannel",
    "TcpChannel",
    "choose_channel",
    "derive_group_key",
]
