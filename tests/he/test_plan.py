from __future__ import annotations

import numpy as np
import pytest
import torch

from sealfn.errors import ConfigError
from sealfn.he.data import Split
from sealfn.he.networks import Net, NetConfig
from sealfn.he.params import MAX_BITS, choose
from sealfn.he.plan import bsgs_steps, compile_graph, cost, diagonals


@pytest.mark.parametrize("net_name", ["he_net", "standard_net"])
def test_plan_on_plaintext_equals_the_trained_net(
    net_name: str, request: pytest.FixtureRequest, data: Split
) -> None:
    net: Net = request.getfixturevalue(net_name)
    plan = compile_graph(net.graph())
    with torch.no_grad():
        expected = net(torch.from_numpy(data.x_test[:16])).double().numpy()
    got = np.stack([plan.run_plain(x) for x in data.x_test[:16]])
    assert np.abs(got - expected).max() < 1e-4


@pytest.mark.parametrize(
    ("kind", "blocks", "depth", "linears", "adds"),
    [
        ("he", 0, 2, 2, 0),
        ("he", 1, 6, 4, 1),
        ("he", 2, 10, 6, 2),
        ("standard", 1, 6, 5, 1),  # the skip add needs its operand scaled by √a: one more matrix
        ("standard", 2, 10, 8, 2),
    ],
)
def test_depth_and_op_counts(kind: str, blocks: int, depth: int, linears: int, adds: int) -> None:
    net = Net(NetConfig(kind=kind, channels=2, blocks=blocks))  # type: ignore[arg-type]
    counted = cost(compile_graph(net.graph()))
    assert (counted.depth, counted.linears, counted.adds) == (depth, linears, adds)
    assert counted.squares == 2 * blocks
    assert counted.bootstraps == 0


def test_diagonals_of_identity_and_shift() -> None:
    assert list(diagonals(np.eye(8))) == [0]
    shift = np.roll(np.eye(8), 3, axis=1)  # row r picks column r + 3
    steps = bsgs_steps(diagonals(shift), 8)
    assert steps.offsets == (3,)
    assert (steps.group, steps.baby, steps.giant) == (4, (3,), ())


def test_bsgs_steps_cover_every_offset() -> None:
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(64, 64)) * (rng.random((64, 64)) < 0.1)
    steps = bsgs_steps(diagonals(matrix), 64)
    assert steps.group == 8
    for k in steps.offsets:
        assert k % 8 in (0, *steps.baby)
        assert k - k % 8 in (0, *steps.giant)


@pytest.mark.parametrize(
    ("depth", "width", "poly", "scale"),
    [(2, 128, 8192, 40), (6, 256, 8192, 25), (7, 256, 16384, 40), (10, 512, 16384, 33)],
)
def test_params_from_depth(depth: int, width: int, poly: int, scale: int) -> None:
    params = choose(depth, width)
    assert (params.poly_modulus, params.scale_bits, params.levels) == (poly, scale, depth)
    assert sum(params.coeff_bits) <= MAX_BITS[poly]
    assert params.coeff_bits[0] - params.scale_bits >= 8


def test_params_refuse_what_no_ring_fits() -> None:
    with pytest.raises(ConfigError, match="bootstrapping"):
        choose(40, 256)
    with pytest.raises(ConfigError, match="depth=0"):
        choose(0, 256)
