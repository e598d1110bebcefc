from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from sealfn.he.data import Split
from sealfn.he.dirac import DiracConv2d
from sealfn.he.export import INPUT_NAME, to_onnx
from sealfn.he.graph import NetGraph
from sealfn.he.networks import Net


def test_fold_is_the_same_convolution() -> None:
    torch.manual_seed(1)
    conv = DiracConv2d(3)
    with torch.no_grad():
        conv.alpha.uniform_(-1, 1)
        conv.beta.uniform_(-1, 1)
        conv.bias.uniform_(-1, 1)
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(conv(x), conv.fold()(x), atol=1e-6)


def test_initial_kernel_is_identity_plus_a_small_normalised_conv() -> None:
    conv = DiracConv2d(2)
    with torch.no_grad():
        conv.beta.zero_()
        x = torch.randn(1, 2, 5, 5)
        assert torch.allclose(conv(x), x)
        conv.beta.fill_(1.0)
        norms = (conv.kernel() - conv.delta).flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.ones(2), atol=1e-6)


def test_trained_dirac_net_equals_its_folded_onnx_export(he_net: Net, data: Split) -> None:
    session = ort.InferenceSession(to_onnx(he_net), providers=["CPUExecutionProvider"])
    batch = data.x_test[:64]
    (exported,) = session.run(None, {INPUT_NAME: batch})
    with torch.no_grad():
        trained = he_net(torch.from_numpy(batch)).numpy()
    assert np.abs(exported - trained).max() <= 1e-5
    assert "Add" in {n.op_type for n in _graph(he_net).node}  # only the shared-source adds remain


def test_folded_export_has_no_add_per_block_in_dirac_convs(he_net: Net) -> None:
    # 1 block: one shared-source Add; the Dirac identity is inside the Conv weights, not an Add.
    convs = [n for n in _graph(he_net).node if n.op_type == "Conv"]
    assert len(convs) == 3  # stem + two block convs


def test_graph_round_trips_and_matches_torch(he_net: Net, standard_net: Net, data: Split) -> None:
    for net in (he_net, standard_net):
        graph = NetGraph.from_bytes(net.graph().to_bytes())
        with torch.no_grad():
            expected = net(torch.from_numpy(data.x_test[:8])).double().numpy()
        got = np.stack([graph.forward(x) for x in data.x_test[:8]])
        assert np.abs(got - expected).max() < 1e-4


def _graph(net: Net) -> Any:
    import onnx

    return onnx.load_from_string(to_onnx(net)).graph
