"""Tiny trained networks and CKKS keys shared by the HE tests (built once per session)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("tenseal")

from sealfn.he.data import Split, digits
from sealfn.he.networks import Net, NetConfig
from sealfn.he.params import choose
from sealfn.he.plan import Plan, compile_graph, cost
from sealfn.he.tenseal_backend import TensealBackend, TensealKeys
from sealfn.he.train import TrainConfig, train

SMALL = TrainConfig(epochs=3, seed=0)


@pytest.fixture(scope="session")
def data() -> Split:
    return digits()


@pytest.fixture(scope="session")
def he_net(data: Split) -> Net:
    """A 1-block Dirac + shared-source net, 2 channels (width 128): a few seconds to train."""
    return train(NetConfig(kind="he", channels=2, blocks=1), data, SMALL, progress=False).net


@pytest.fixture(scope="session")
def standard_net(data: Split) -> Net:
    return train(NetConfig(kind="standard", channels=2, blocks=1), data, SMALL, progress=False).net


@pytest.fixture(scope="session")
def he_plan(he_net: Net) -> Plan:
    return compile_graph(he_net.graph())


@pytest.fixture(scope="session")
def keys(he_plan: Plan) -> TensealKeys:
    """Keys sized for ``he_plan`` (depth 6: N = 8192)."""
    return TensealBackend().keygen(choose(cost(he_plan).depth, he_plan.width))
