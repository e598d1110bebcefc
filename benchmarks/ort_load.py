"""Time ``import onnxruntime`` and ``InferenceSession(path)`` in a fresh process (the cold floor).

Usage: ``python benchmarks/ort_load.py MODEL.onnx INPUT_NAME 1,3,224,224``. Prints one JSON line
with the timings as soon as the first inference is done, then one with the process's memory.
The session options are those of a sealfn instance (ORT default intra-op threads, CPU EP).
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> int:
    began = time.perf_counter()
    path, input_name, shape_text = argv
    import numpy as np
    import onnxruntime as ort

    imported = time.perf_counter()
    session = ort.InferenceSession(path, sess_options=session_options(ort), providers=_PROVIDERS)
    loaded = time.perf_counter()
    shape = tuple(int(d) for d in shape_text.split(","))
    session.run(None, {input_name: np.zeros(shape, dtype=np.float32)})
    ran = time.perf_counter()
    timings = {
        "import_s": imported - began,
        "load_s": loaded - imported,
        "import_load_s": loaded - began,
        "first_run_s": ran - loaded,
    }
    print(json.dumps(timings), flush=True)
    import psutil

    info = psutil.Process().memory_full_info()
    print(json.dumps({"rss_mb": info.rss / (1 << 20), "pss_mb": info.pss / (1 << 20)}), flush=True)
    return 0


_PROVIDERS = ["CPUExecutionProvider"]


def session_options(ort: object) -> object:
    """The options a sealfn instance uses (``sealfn.instance.models.ModelHost.load``)."""
    options = ort.SessionOptions()  # type: ignore[attr-defined]
    options.intra_op_num_threads = 0  # ORT default: one per physical core
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
