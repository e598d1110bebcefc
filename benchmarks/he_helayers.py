"""The same networks on IBM HElayers (optional; non-commercial licence, never a dependency).

Two halves:
- ``onnx_for_helayers(graph)`` (sealfn's venv): the folded network as plain ONNX ops HElayers
  imports — Conv (the activation's affine part folded in, as for the TenSEAL plan), Mul(x, x),
  BatchNormalization (the activation's constant), Add (the skips), Flatten, Gemm.
- ``python benchmarks/he_helayers.py MODEL.onnx IMAGES.npy`` (run with a Python that has
  ``pyhelayers``, in its own process: HElayers' C++ aborts kill the process): compile, encrypt,
  predict one image at a time; prints one JSON line.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BN_EPSILON = 1e-5


def onnx_for_helayers(graph: Any) -> bytes:
    """ONNX (opset 13) of a ``sealfn.he.graph.NetGraph``, activations as conv-folded squares."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    c_in, h, w = graph.image
    nodes: list[Any] = []
    inits: list[Any] = []
    count = [0]

    def name(prefix: str) -> str:
        count[0] += 1
        return f"{prefix}{count[0]}"

    def const(values: np.ndarray) -> str:
        label = name("w")
        inits.append(numpy_helper.from_array(values.astype(np.float32), label))
        return label

    def conv(x: str, weight: np.ndarray, bias: np.ndarray) -> str:
        out = name("conv")
        pad = weight.shape[2] // 2
        nodes.append(
            helper.make_node(
                "Conv",
                [x, const(weight), const(bias)],
                [out],
                name=out,
                kernel_shape=list(weight.shape[2:]),
                pads=[pad] * 4,
                strides=[1, 1],
            )
        )
        return out

    def activation(x: str, conv_: Any, act: Any) -> str:
        root = np.sqrt(act.a)
        weight = conv_.weight * root[:, None, None, None]
        bias = conv_.bias * root + act.b / (2 * root)
        y = conv(x, weight, bias)
        squared = name("sq")
        nodes.append(helper.make_node("Mul", [y, y], [squared]))
        return shift(squared, act.c - act.b**2 / (4 * act.a))

    def affine(x: str, scale: np.ndarray, offset: np.ndarray) -> str:
        """Per-channel ``scale·x + offset`` as an inference-mode BatchNormalization."""
        out = name("bn")
        # HElayers wants epsilon > 0: variance 1 - ε makes the denominator exactly 1
        variance = np.full_like(offset, 1.0 - BN_EPSILON)
        inputs = [x, const(scale), const(offset), const(np.zeros_like(offset)), const(variance)]
        nodes.append(
            helper.make_node("BatchNormalization", inputs, [out], name=out, epsilon=BN_EPSILON)
        )
        return out

    def shift(x: str, offset: np.ndarray) -> str:
        return affine(x, np.ones_like(offset), offset)

    def add(a: str, b: str) -> str:
        out = name("add")
        nodes.append(helper.make_node("Add", [a, b], [out]))
        return out

    source = conv("input", graph.stem.weight, graph.stem.bias)
    y = source
    for block in graph.blocks:
        u = activation(y, block.conv1, block.act1)
        if graph.kind == "standard":
            # act2(conv2(u) + y): the skip added before the activation, as in a ResNet
            z = conv(u, block.conv2.weight, block.conv2.bias)
            root = np.sqrt(block.act2.a)
            scaled_z = affine(z, root, block.act2.b / (2 * root))
            scaled_y = affine(y, root, np.zeros_like(root))
            summed = add(scaled_z, scaled_y)
            squared = name("sq")
            nodes.append(helper.make_node("Mul", [summed, summed], [squared]))
            act = block.act2
            y = shift(squared, act.c - act.b**2 / (4 * act.a))
        else:
            y = add(activation(u, block.conv2, block.act2), source)
    flat = name("flat")
    nodes.append(helper.make_node("Flatten", [y], [flat], axis=1))
    nodes.append(
        helper.make_node(
            "Gemm", [flat, const(graph.head_weight), const(graph.head_bias)], ["logits"], transB=1
        )
    )
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "net",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, c_in, h, w])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, graph.classes])],
            inits,
        ),
        opset_imports=[helper.make_opsetid("", 13)],
        ir_version=8,
    )
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def run_in_subprocess(
    python: str, onnx_bytes: bytes, images: np.ndarray, timeout_s: float = 900
) -> dict[str, Any]:
    """Run the HElayers half in ``python`` (another venv); its result, or why it failed."""
    with tempfile.TemporaryDirectory() as folder:
        model, data = Path(folder) / "model.onnx", Path(folder) / "images.npy"
        model.write_bytes(onnx_bytes)
        np.save(data, images.astype(np.float32))
        try:
            done = subprocess.run(
                [python, __file__, str(model), str(data)],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout_s:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout)[-400:]
        return {"error": f"exit {done.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _helayers_main(model: str, images_path: str) -> None:
    import pyhelayers

    images = np.load(images_path)
    started = time.perf_counter()
    plain = pyhelayers.NeuralNetPlain()
    plain.init_from_files(pyhelayers.PlainModelHyperParams(), [model])
    requirements = pyhelayers.HeRunRequirements()
    requirements.set_he_context_options([pyhelayers.DefaultContext()])
    requirements.optimize_for_batch_size(1)
    profile = pyhelayers.HeModel.compile(plain, requirements)
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    context = pyhelayers.HeModel.create_context(profile)
    net = pyhelayers.NeuralNet(context)
    net.encode_encrypt(plain, profile)
    setup_s = time.perf_counter() - started
    io = pyhelayers.ModelIoEncoder(net)
    latencies, logits = [], []
    for image in images:
        samples = pyhelayers.EncryptedData(context)
        io.encode_encrypt(samples, [image[None]])
        predictions = pyhelayers.EncryptedData(context)
        started = time.perf_counter()
        net.predict(predictions, samples)
        latencies.append(time.perf_counter() - started)
        logits.append(np.asarray(io.decrypt_decode_output(predictions)).reshape(-1).tolist())
    print(
        json.dumps(
            {
                "library": f"pyhelayers {pyhelayers.VERSION}",
                "context": type(context).__name__,
                "compile_s": compile_s,
                "setup_s": setup_s,
                "latency_s": latencies,
                "latency_p50_s": statistics.median(latencies),
                "logits": logits,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "requirement": str(profile.get_he_config_requirement().to_string()),
                "context_name": str(profile.get_context_name()),
            }
        )
    )


if __name__ == "__main__":
    _helayers_main(sys.argv[1], sys.argv[2])
