"""Option tables and checks of the bench that need no torch: amortization backends and the
devices they run on (bench.py checks them before anything runs; amortization.py again)."""
from __future__ import annotations

from fcn_deploy.errors import OptionError

# torch-frozen: TorchScript frozen and optimized for inference, so oneDNN packs the conv
# weights once instead of re-laying them out on every eager call.
AMORTIZATION_BACKENDS = ("torch", "torch-frozen", "torch-fp16", "onnxruntime")


def check_backend(backend: str, device: str) -> None:
    """OptionError unless amortization ``backend`` exists and runs on ``device`` ("any": only
    the name is checked)."""
    if backend not in AMORTIZATION_BACKENDS:
        raise OptionError(f"unknown amortization backend {backend!r}; choose "
                          f"{', '.join(AMORTIZATION_BACKENDS)}")
    if device == "any":
        return
    cuda = device.startswith("cuda")
    if backend == "onnxruntime" and cuda:
        raise OptionError("the onnxruntime amortization backend runs on CPU; use "
                          "--amort-backends torch,torch-fp16 with --device cuda")
    if backend == "torch-fp16" and not cuda:
        raise OptionError("the torch-fp16 amortization backend needs --device cuda")
