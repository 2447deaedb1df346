"""The ``model.py`` of fcn-deploy's Triton Python-backend models (copied there by
``export_triton(..., backend="python")``); it runs only inside Triton's Python backend stub.

The config parameter ``fcn_python_model`` says what it serves: ``segmenter`` (the ONNX file or
engine beside this file, through fcn_deploy's runtime: no torch, no onnxruntime backend) or
``argmax`` (per-class scores -> uint8 labels, the labels ensemble's second step).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from fcn_deploy.runtime.factory import open_segmenter

ARTIFACTS = ("model.onnx", "model.plan")


def open_artifact(folder: Path, instance_kind: str):
    """The loaded Segmenter of the artifact in the version folder (on the instance's device)."""
    found = [folder / name for name in ARTIFACTS if (folder / name).is_file()]
    if not found:
        raise pb_utils.TritonModelException(f"{folder} holds none of {', '.join(ARTIFACTS)}")
    device = "cuda" if instance_kind == "GPU" else "cpu"
    return open_segmenter(found[0], device=device).load()


def argmax(scores: np.ndarray) -> dict[str, np.ndarray]:
    """N x K x H x W scores (logits or probs) -> N x H x W uint8 labels."""
    return {"labels": scores.argmax(1).astype(np.uint8)}


class TritonPythonModel:
    """Batches the requests of one ``execute`` by input shape; answers a bad one with an error."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        role = config["parameters"]["fcn_python_model"]["string_value"]
        (self.input,) = config["input"]
        self.dtype = pb_utils.triton_string_to_numpy(self.input["data_type"])
        self.outputs = {o["name"]: pb_utils.triton_string_to_numpy(o["data_type"])
                        for o in config["output"]}
        if role == "argmax":
            self.infer = argmax
        else:
            folder = Path(args["model_repository"]) / args["model_version"]
            self.segmenter = open_artifact(folder, args["model_instance_kind"])
            self.infer = self.segmenter.run

    def execute(self, requests: list) -> list:
        responses, groups = [None] * len(requests), {}
        for i, request in enumerate(requests):
            x = pb_utils.get_input_tensor_by_name(request, self.input["name"])
            x = None if x is None else x.as_numpy()
            problem = self.check(x)
            if problem:
                responses[i] = failure(problem, pb_utils.TritonError.INVALID_ARG)
            else:  # Triton's dynamic batcher may hand over requests of several image sizes
                groups.setdefault((x.dtype, x.shape[1:]), []).append((i, x))
        for members in groups.values():
            self.answer(members, responses)
        return responses

    def check(self, x: np.ndarray | None) -> str:
        """Why ``x`` is no batch of this model's input (empty when it is one)."""
        dims = self.input["dims"]
        if x is None:
            return f"the request has no input {self.input['name']!r}"
        if (x.dtype != self.dtype or x.ndim != len(dims) + 1 or 0 in x.shape
                or any(d not in (-1, n) for d, n in zip(dims, x.shape[1:]))):
            want = "x".join(["N"] + [str(d) if d > 0 else "?" for d in dims])
            return (f"input {self.input['name']!r} must be {np.dtype(self.dtype).name} {want}, "
                    f"not {x.dtype} {'x'.join(map(str, x.shape))}")
        return ""

    def answer(self, members: list, responses: list) -> None:
        """One run for requests of one shape; one by one when that run fails, so that a
        request the model cannot take fails alone."""
        try:
            outputs = self.infer(np.concatenate([x for _, x in members]))
        except Exception as e:  # any failure of the runtime is this batch's answer, not a crash
            if len(members) > 1:
                for member in members:
                    self.answer([member], responses)
                return
            responses[members[0][0]] = failure(f"{type(e).__name__}: {e}".splitlines()[0])
            return
        start = 0
        for i, x in members:
            part = slice(start, start + len(x))
            responses[i] = pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(name, np.ascontiguousarray(outputs[name][part], dtype))
                for name, dtype in self.outputs.items()])
            start = part.stop

    def finalize(self) -> None:
        segmenter = getattr(self, "segmenter", None)
        if segmenter is not None:
            segmenter.close()


def failure(message: str, code=None):
    """An error response: the client gets ``message`` (HTTP 400 for ``INVALID_ARG``, else
    500), the model keeps serving."""
    code = pb_utils.TritonError.INTERNAL if code is None else code
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))
