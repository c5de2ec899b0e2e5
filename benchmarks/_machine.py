"""What the benchmarks record about the machine they ran on, and the data they share."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where it exists)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def shared_data() -> Path:
    """``$AXCNN_SHARED_DATA`` or ``<repo>/../shared/data`` (development data, never shipped)."""
    return Path(os.environ.get("AXCNN_SHARED_DATA", ROOT.parent / "shared" / "data"))


def evoapprox_luts() -> dict:
    """name -> MultiplierLUT of the shared EvoApprox tables ({} when they are absent)."""
    import numpy as np

    from axcnn.lut import MultiplierLUT

    root = shared_data()
    npz, js = root / "evoapprox8_luts.npz", root / "evoapprox8_luts.json"
    if not (npz.is_file() and js.is_file()):
        return {}
    info = json.loads(js.read_text())
    with np.load(npz) as z:
        return {n: MultiplierLUT(z[n], signed=bool(info[n]["signed"]), name=n) for n in z.files}


def gpu_meta(dev) -> dict:
    """Date, card and software versions of a GPU benchmark run."""
    import torch
    import triton

    props = torch.cuda.get_device_properties(dev)
    return {"date": _dt.datetime.now().isoformat(timespec="seconds"), "device": props.name,
            "sms": props.multi_processor_count, "torch": torch.__version__,
            "cuda": torch.version.cuda, "triton": triton.__version__}
