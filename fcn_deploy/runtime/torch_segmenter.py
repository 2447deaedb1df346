"""PyTorch backend: a checkpoint (or an in-memory model) on CPU or CUDA, FP32 or FP16,
optionally channels_last, ``torch.compile`` and, on CUDA, one captured CUDA graph per shape;
``rgb8`` takes uint8 NHWC frames and normalizes them on the device (a quarter of the bytes)."""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from fcn_deploy.contract.metadata import INPUT_FORMATS, ArtifactMeta
from fcn_deploy.errors import FcnDeployError
from fcn_deploy.models.checkpoint import load_model, model_metadata
from fcn_deploy.models.heads import RGB8Input
from fcn_deploy.runtime.base import MAX_GRAPHS, Segmenter


class TorchSegmenter(Segmenter):
    """Runs a training checkpoint, or ``model`` with its ``meta``, in PyTorch."""

    backend = "torch"

    def __init__(self, path: Path | None = None, *, model: nn.Module | None = None,
                 meta: ArtifactMeta | None = None, device: str = "cpu", fp16: bool = False,
                 channels_last: bool = False, cuda_graph: bool = False, compile: bool = False,
                 rgb8: bool = False, threads: int | None = None):
        if (path is None) == (model is None):
            raise ValueError("give exactly one of a checkpoint path and a model")
        if path is not None:
            meta = model_metadata(path)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise FcnDeployError(f"torch device {device!r}: no CUDA GPU visible to PyTorch")
        if cuda_graph and not device.startswith("cuda"):
            raise FcnDeployError("CUDA graphs need a CUDA device (--device cuda)")
        if fp16 and not device.startswith("cuda"):
            raise FcnDeployError("FP16 in PyTorch is for CUDA devices; "
                                 "on CPU use an FP16 ONNX file")
        spec = dataclasses.replace(INPUT_FORMATS["rgb8" if rgb8 else "float"])
        super().__init__(path, meta.replace(output="logits", precision="fp16" if fp16 else "fp32",
                                            input=spec))
        self._model, self._device = model, torch.device(device)
        self.fp16, self.channels_last, self.cuda_graph = fp16, channels_last, cuda_graph
        self.compile, self.rgb8, self.threads = compile, rgb8, threads
        self._graphs: dict = {}

    @property
    def device(self) -> str:
        return str(self._device)

    def _load(self) -> None:
        if self.threads:  # torch's pool is the process's: this Segmenter's threads are all
            torch.set_num_threads(self.threads)
        if self._model is None:
            self._model, _ = load_model(self.path)
        # .to/.half/channels_last change a module in place: a given model is copied so that
        # several Segmenters (e.g. one per bench mode) can share it.
        model = self._model if self.path is not None else copy.deepcopy(self._model)
        model = model.eval().to(self._device)
        if self.fp16:
            model = model.half()
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.compile:
            import torch._inductor.config as inductor  # --compile only: loads the compiler

            # Weights are constants at inference: freezing lets inductor fold them and prepack
            # oneDNN convolution weights (on this CPU: ~196 vs ~140 GFLOP/s for FCN-8s eager).
            inductor.freezing = True
            model = torch.compile(model)
        self._net = model
        self._pre = RGB8Input(**self.meta.normalization).to(self._device) if self.rgb8 else None

    def _release(self) -> None:
        self._net, self._graphs = None, {}
        if self.path is not None:
            self._model = None  # reloaded from the file by the next load()
        if self._device.type == "cuda":
            torch.cuda.empty_cache()

    def _to_input(self, batch: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(batch).to(self._device)
        if self._pre is not None:  # normalized in FP32 on the device, as an rgb8 graph does
            x = self._pre(x)
        x = x.to(torch.float16 if self.fp16 else torch.float32)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @torch.inference_mode()
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        key = tuple(x.shape)
        if not self.cuda_graph or (key not in self._graphs and len(self._graphs) >= MAX_GRAPHS):
            return self._net(x)
        if key not in self._graphs:
            self._graphs[key] = self._capture(x)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out

    def _capture(self, x: torch.Tensor):
        static_in = x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the graph (cuDNN picks its kernels here)
            for _ in range(2):
                self._net(static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self._net(static_in)
        return graph, static_in, static_out

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        return [self._forward(self._to_input(batch)).float().cpu().numpy()]

    def _timer(self, x: np.ndarray) -> Callable[[], float]:
        if self._device.type != "cuda":
            return super()._timer(x)
        resident = self._to_input(x)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def timed() -> float:
            start.record()
            self._forward(resident)
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        return timed
