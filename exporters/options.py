"""The export, build and Triton option tables (no torch, onnx or numpy: the CLI's choices and
--help read them), and the checks of INT8 options shared by export and quant-report."""
from __future__ import annotations

from fcn_deploy.errors import OptionError

PRECISIONS = ("fp32", "fp16", "int8")
CALIB_METHODS = ("minmax", "entropy", "percentile")
# S8S8 (signed activations and weights, symmetric) is what TensorRT consumes; U8S8 (unsigned
# asymmetric activations) suits onnxruntime's CPU kernels (VNNI u8 x s8 dot products).
INT8_SCHEMES = ("s8s8", "u8s8")
UPSAMPLE_PRECISIONS = ("fp16", "int8")
TRITON_KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}
TRITON_BACKENDS = ("auto", "python")


def check_int8_options(method: str = "minmax", scheme: str = "s8s8",
                       upsample: str = "fp16") -> None:
    """OptionError for a calibration method, INT8 scheme or upsample precision not known."""
    for what, value, choices in (("calibration method", method, CALIB_METHODS),
                                 ("INT8 scheme", scheme, INT8_SCHEMES),
                                 ("upsample precision", upsample, UPSAMPLE_PRECISIONS)):
        if value not in choices:
            raise OptionError(f"unknown {what} {value!r}; choose {', '.join(choices)}")
