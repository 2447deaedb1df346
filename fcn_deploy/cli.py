"""The ``fcn-deploy`` command line: train, eval, predict, info."""
from __future__ import annotations

import enum
import functools
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import FcnDeployError
from .models import list_models

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="FCN semantic segmentation from PyTorch to ONNX/TensorRT, with benchmarks.")
console = Console()
Arch = enum.Enum("Arch", {name: name for name in list_models()}, type=str)
_state = {"verbose": False}

DATA_HELP = "'synthetic' (generated, the default) or a PASCAL VOC-layout folder"
SKIP_HELP = "Skip and count corrupt or inconsistent samples of a VOC-layout folder instead of failing."


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks on errors.")):
    _state["verbose"] = verbose


def command(fn):
    """Register ``fn`` as a subcommand whose user errors print one line and exit 1."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (FcnDeployError, ValueError, OSError) as e:
            if _state["verbose"]:
                raise
            print(f"error: {e}", file=sys.stderr)
            raise typer.Exit(1) from None
    return app.command()(run)


@command
def train(
    arch: Arch = typer.Option(Arch("fcn32s-vgg16"), help="Architecture (from the model registry)."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint to write (.safetensors), every epoch."),
    width: float = typer.Option(0.125, help="Channel width multiplier (1 = the paper's VGG16)."),
    data: str = typer.Option("synthetic", help=DATA_HELP),
    image_size: int = typer.Option(64, help="Synthetic image size (pixels, square)."),
    samples: int = typer.Option(512, help="Synthetic training images per epoch."),
    crop: Optional[int] = typer.Option(None, help="Random square crop for batching VOC images."),
    epochs: int = typer.Option(8, min=1),
    batch_size: int = typer.Option(8, min=1),
    optimizer: str = typer.Option("adam", help="adam (trains from scratch reliably) or sgd "
                                  "(momentum, the paper's choice for fine-tuning pretrained trunks)."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (linear warm-up, cosine "
                                       "decay); default 1e-3 for adam, 1e-2 for sgd."),
    momentum: float = typer.Option(0.9, help="SGD momentum."),
    weight_decay: Optional[float] = typer.Option(None, help="Default 0 for adam, 5e-4 for sgd."),
    warmup_epochs: float = typer.Option(0.3),
    learn_upsample: str = typer.Option("intermediate", help="Which upsamplers learn: intermediate "
                                       "(the paper: all but the last), all, none."),
    init: Optional[Path] = typer.Option(None, help="Initialise from a checkpoint: a coarser FCN "
                                        "(staged 32s->16s->8s) or a torchvision-layout VGG16/AlexNet."),
    resume: bool = typer.Option(False, help="Continue the run in --out from its last epoch."),
    skip_bad: bool = typer.Option(False, help=SKIP_HELP),
    seed: int = typer.Option(0),
):
    """Train an FCN; a checkpoint with its metadata is written atomically after every epoch."""
    from .train import TrainConfig, train as run_train

    dataset = _open_data(data, "train", image_size, samples, skip_bad, seed)
    cfg = TrainConfig(arch=arch.value, width=width, epochs=epochs, batch_size=batch_size,
                      optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay,
                      warmup_epochs=warmup_epochs, crop=crop, learn_upsample=learn_upsample, seed=seed)
    run_train(cfg, dataset, out, init=init, resume=resume, log=console.print)
    console.print(f"checkpoint: {out}")


@command
def eval(
    checkpoints: List[Path] = typer.Argument(..., help="Checkpoints to evaluate."),
    data: str = typer.Option("synthetic", help=DATA_HELP),
    split: str = typer.Option("val"),
    image_size: int = typer.Option(64, help="Synthetic image size."),
    samples: int = typer.Option(64, help="Synthetic evaluation images."),
    batch_size: int = typer.Option(8, min=1),
    skip_bad: bool = typer.Option(False, help=SKIP_HELP),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics as JSON."),
):
    """Pixel accuracy, mean accuracy, mean IU and frequency-weighted IU (the paper's metrics)."""
    from .atomic import atomic_path
    from .checkpoint import load_model
    from .evaluation import evaluate, torch_predictor

    results = {}
    dataset = _open_data(data, split, image_size, samples, skip_bad)
    for path in checkpoints:
        model, meta = load_model(path)
        _check_classes(meta, dataset, path)
        predictor = torch_predictor(model, meta["mean"], meta["std"])
        results[str(path)] = {"arch": meta["arch"], **evaluate(predictor, dataset, meta["num_classes"],
                                                              batch_size, f"eval {path.name}")}
    table = Table("checkpoint", "arch", "pixel acc", "mean acc", "mean IU", "f.w. IU")
    for path, r in results.items():
        table.add_row(path, r["arch"], *(f"{r[k]:.3f}" for k in ("pixel_acc", "mean_acc", "mean_iu", "fwavacc")))
    console.print(table)
    if json_out:
        with atomic_path(json_out) as tmp:
            tmp.write_text(json.dumps(results, indent=2))


def _open_data(data: str, split: str, image_size: int, samples: int, skip_bad: bool, seed: int = 0):
    from .data import open_dataset

    dataset = open_dataset(data, split, image_size, samples, seed, skip_bad)
    skipped = getattr(dataset, "skipped", [])
    if skipped:
        console.print(f"skipped {len(skipped)} bad samples of {data} ({split}); first: "
                      f"{skipped[0][0]}: {skipped[0][1]}")
    return dataset


def _check_classes(meta: dict, dataset, path: Path) -> None:
    if meta["num_classes"] != dataset.num_classes:
        raise FcnDeployError(f"{path} predicts {meta['num_classes']} classes but the data set has "
                             f"{dataset.num_classes}")


@command
def predict(
    checkpoint: Path = typer.Argument(..., help="Checkpoint to run."),
    inputs: List[Path] = typer.Argument(..., help="Image files or folders of images."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for label PNGs and overlays."),
):
    """Write a palette label PNG and a colourised overlay for every input image."""
    from .checkpoint import load_model
    from .evaluation import torch_predictor
    from .visualize import collect_images, read_image, write_prediction

    model, meta = load_model(checkpoint)
    predictor = torch_predictor(model, meta["mean"], meta["std"])
    files = collect_images(inputs)
    out.mkdir(parents=True, exist_ok=True)
    for f in files:
        image = read_image(f)
        labels = predictor(image[None])[0]
        write_prediction(out, f.stem, image, labels)
    console.print(f"wrote {len(files)} label maps and overlays to {out}")


@command
def info(artifact: Path = typer.Argument(..., help="A checkpoint (.safetensors).")):
    """Print what an artifact is: architecture, classes, parameters, input rules."""
    from .checkpoint import load_model

    model, meta = load_model(artifact)
    params = sum(p.numel() for p in model.parameters())
    table = Table("field", "value", show_header=False)
    rows = {
        "arch": meta["arch"], "width": meta["width"], "epoch": meta.get("epoch"),
        "classes": f"{meta['num_classes']}: {', '.join(meta['class_names'])}",
        "parameters": f"{params:,}", "total stride": model.stride,
        "crop offsets": ", ".join(map(str, model.crops)),
        "input": "float32 N x 3 x H x W, RGB scaled to [0, 1], then (x - mean) / std; "
                 "any H, W from 1 to 1199",
        "mean / std": f"{meta['mean']} / {meta['std']}",
        "output": f"float32 N x {meta['num_classes']} x H x W logits",
        "fcn-deploy version": meta.get("fcn_deploy_version"),
    }
    for k, v in rows.items():
        table.add_row(k, str(v))
    console.print(table)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
