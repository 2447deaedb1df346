"""PyTorch: training checkpoints, eager (or compiled, CUDA graphs), on the CPU or a GPU."""
from fcn_deploy.runtime.registry import Backend


def _open(path, device, options, log):
    from fcn_deploy.runtime.torch_segmenter import TorchSegmenter  # torch

    return TorchSegmenter(path, device=device, **options)


BACKEND = Backend(
    name="torch", kinds=("checkpoint",), devices=("cpu", "cuda"), open=_open,
    requires=("torch", "safetensors"), extra="torch", order=10,
    options=("threads", "fp16", "channels_last", "cuda_graph", "compile"),
    summary="PyTorch (checkpoints; fp16, channels_last, compile and CUDA graphs on GPUs)")
