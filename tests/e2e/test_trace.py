"""SEALFN_TRACE_PHASES: one line of phase timestamps per plain request, in order, no tensors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from sealfn import oip

if TYPE_CHECKING:
    from pathlib import Path

    from sealfn_testing import Models, Server

# consecutive along one request's path: gateway → pool → instance → pool → gateway
ORDER = [
    "g_enter",
    "g_body",
    "g_decoded",
    "g_validated",
    "p_dispatch",
    "h_write",
    "h_sent",
    "i_recv",
    "i_frame",
    "i_run",
    "i_done",
    "h_arrived",
    "h_resumed",
    "h_read",
    "p_resolve",
    "g_replied",
    "g_encoded",
    "g_end",
]


def test_traced_requests_write_ordered_stamps(
    start_server: Callable[..., Server], models: Models, tmp_path: Path
) -> None:
    trace_file = tmp_path / "phases.jsonl"
    server = start_server(SEALFN_TRACE_PHASES=str(trace_file))
    server.client.deploy("mlp", models.mlp, min_instances=1)
    x = np.full((1, 16), 0.5, np.float32)  # 0.5 is not a timestamp: the check below is honest
    body, headers = oip.encode_request([oip.Tensor.from_numpy("input", x)], binary=True)
    with server.http() as http:
        for _ in range(3):
            reply = http.post("/v2/models/mlp/infer", content=body, headers=headers)
            assert reply.status_code == 200
    lines = trace_file.read_text().splitlines()
    assert len(lines) == 3
    for line in lines:
        record = json.loads(line)
        assert record.pop("status") == 200
        assert sorted(record) == sorted(ORDER)
        stamps = [record[key] for key in ORDER]
        assert stamps == sorted(stamps), "stamps out of order"


def test_tracing_is_off_by_default(server: Server, deploy: Callable[..., str], models: Models):
    name = deploy(models.mlp)
    x = np.zeros((1, 16), np.float32)
    body, headers = oip.encode_request([oip.Tensor.from_numpy("input", x)], binary=True)
    with server.http() as http:
        reply = http.post(f"/v2/models/{name}/infer", content=body, headers=headers)
    assert reply.status_code == 200
    assert "trace" not in server.log()
