"""A user's own segmentation module: ``FILE.py:factory`` or ``package.module:factory`` (a
callable returning an ``nn.Module``) or a ``torch.export`` program (``FILE.pt2``), wrapped so
that export sees what it sees in fcn-deploy's own nets: one N x K x H x W score tensor at the
input's size."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import torch
from torch import nn

from fcn_deploy.errors import CheckpointError, FcnDeployError, OptionError, message_line

# The probe input: odd sides catch a module that only takes multiples of its stride.
PROBE = (1, 3, 67, 91)


def _factory(spec: str):
    """The callable named by ``FILE.py:NAME`` or ``package.module:NAME``."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise OptionError(f"--model {spec!r}: give FILE.py:FACTORY or package.module:FACTORY")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise OptionError(f"--model {spec}: {path} does not exist")
        module_name = f"fcn_deploy_user_{path.stem}"
        loader = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader)
        sys.path.insert(0, str(path.parent.resolve()))  # its own sibling imports
        try:
            _run(lambda: loader.loader.exec_module(module), f"importing {path}")
        finally:
            sys.path.pop(0)
    else:
        module = _run(lambda: importlib.import_module(where), f"importing {where}")
    if not callable(getattr(module, name, None)):
        raise OptionError(f"--model {spec}: {where} has no callable {name}")
    return getattr(module, name)


def _run(fn, what: str):
    """``fn()``; a failure in the user's code as one CheckpointError line naming ``what``."""
    try:
        return fn()
    except FcnDeployError:
        raise
    except Exception as e:
        raise CheckpointError(f"{what} failed: {type(e).__name__}: {message_line(e)}") from e


class UserFCN(nn.Module):
    """``module``'s scores: the tensor it returns, or ``output_key``'s entry of a dict; its
    class count is the channel count of a probe forward."""

    def __init__(self, module: nn.Module, output_key: str | None, where: str):
        super().__init__()
        self.module, self.output_key, self.where = module, output_key, where
        self.crops, self.stride, self.trunk_names = [], None, []
        self.needs_dynamo = getattr(module, "needs_dynamo", False)
        with torch.no_grad():
            probe = _run(lambda: self.eval()(torch.zeros(PROBE)),
                         f"running {where} on a {'x'.join(map(str, PROBE))} input")
        if probe.dim() != 4 or tuple(probe.shape[2:]) != PROBE[2:]:
            raise CheckpointError(
                f"{where} returns {'x'.join(map(str, probe.shape))} for a "
                f"{'x'.join(map(str, PROBE))} input; fcn-deploy exports per-pixel scores, "
                "N x K x H x W at the input's size: upsample to the input inside the module")
        self.num_classes = int(probe.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.module(x)
        if isinstance(out, dict):
            if self.output_key is None or self.output_key not in out:
                keys = ", ".join(map(str, out))
                raise CheckpointError(f"{self.where} returns a dict ({keys}): name the scores "
                                      "with --output-key" + (f" (no {self.output_key!r} in it)"
                                                             if self.output_key else ""))
            out = out[self.output_key]
        elif self.output_key is not None:
            raise OptionError(f"--output-key {self.output_key}: {self.where} returns a "
                              f"{type(out).__name__}, not a dict")
        if not isinstance(out, torch.Tensor):
            raise CheckpointError(f"{self.where} returns a {type(out).__name__}, not a tensor "
                                  "(or a dict of tensors with --output-key)")
        return out


class ExportedModule(nn.Module):
    """A ``torch.export`` program's module: inference as exported (it has no train mode to
    switch), and traced again by the dynamo ONNX exporter (``needs_dynamo``)."""

    needs_dynamo = True

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x)

    def train(self, mode: bool = True):
        self.training = mode  # the program's own module refuses train() and eval()
        return self


def load_exported_program(path: Path) -> ExportedModule:
    """The module of the ``torch.export`` program at ``path``; its input must have dynamic
    N, H and W (exported with ``dynamic_shapes``), as every fcn-deploy export does."""
    if not path.is_file():
        raise OptionError(f"--model {path}: no such file")
    program = _run(lambda: torch.export.load(path), f"loading {path}")
    inputs = [n.meta["val"].shape for n in program.graph.nodes
              if n.op == "placeholder" and n.name in program.graph_signature.user_inputs]
    if len(inputs) != 1 or len(inputs[0]) != 4:
        raise CheckpointError(f"{path} takes {len(inputs)} inputs; fcn-deploy exports take one "
                              "N x 3 x H x W image batch")
    fixed = [axis for axis, d in zip("NHW", (inputs[0][i] for i in (0, 2, 3)))
             if isinstance(d, int)]
    if fixed:
        shape = "x".join(map(str, inputs[0]))
        raise CheckpointError(
            f"{path} was exported for a fixed {shape} input ({', '.join(fixed)} fixed); "
            "fcn-deploy exports take any N, H and W: torch.export.export it with "
            "dynamic_shapes {0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO} and an example batch of 2")
    # the guards would refuse N = 1 for a program traced at N = 2 (torch.export specializes
    # 0 and 1); the graph itself takes any N
    return ExportedModule(program.module(check_guards=False))


def model_file(spec: str) -> Path | None:
    """The file ``--model spec`` reads (a .py or .pt2), None for a package module."""
    path = Path(spec if spec.endswith(".pt2") else spec.rpartition(":")[0])
    return path if path.suffix in (".py", ".pt2") else None


def model_name(spec: str) -> str:
    """The name an artifact records for ``--model spec``: custom:FACTORY or custom:STEM."""
    return f"custom:{Path(spec).stem if spec.endswith('.pt2') else spec.rpartition(':')[2]}"


def load_user_model(spec: str, output_key: str | None = None) -> UserFCN:
    """The module ``spec``'s factory builds (or a ``.pt2`` program's), in eval mode, wrapped
    as a ``UserFCN``."""
    if spec.endswith(".pt2"):
        return UserFCN(load_exported_program(Path(spec)), output_key, spec)
    module = _run(_factory(spec), f"--model {spec}")
    if not isinstance(module, nn.Module):
        raise CheckpointError(f"--model {spec} returned a {type(module).__name__}, not a "
                              "torch.nn.Module")
    return UserFCN(module.eval(), output_key, spec)
