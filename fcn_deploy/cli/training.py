"""Training commands: pretrain (the classifier), train (FCNs, staged 32s -> 16s -> 8s), and
reproduce (the paper's experiments on synthetic scenes)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, Optional

import typer

from fcn_deploy.atomic import check_file_output, check_folder_output, check_outputs
from fcn_deploy.contract.conventions import CONVENTIONS

from .app import command, console
from .options import Arch, Data, ImageSize, SkipBad, open_data


@command
def train(
    arch: Arch = typer.Option("fcn32s-vgg16", help="Architecture (from the model registry)."),
    out: Path = typer.Option(..., "--out", "-o",
                             help="Checkpoint to write (.safetensors), every epoch."),
    width: float = typer.Option(0.125, help="Channel width multiplier (1 = the paper's VGG16)."),
    data: Data = "synthetic",
    image_size: ImageSize = 64,
    samples: int = typer.Option(512, help="Synthetic training images per epoch."),
    crop: Optional[int] = typer.Option(None, help="Random square crop for batching VOC images."),
    mosaic: int = typer.Option(1, min=1, help="Tile k x k training images (of one size, after "
                               "--crop) into one: cheaper per image, as conv1's 100 px pad costs "
                               "every image the same; --batch-size counts mosaics."),
    epochs: int = typer.Option(8, min=1),
    batch_size: int = typer.Option(8, min=1),
    optimizer: str = typer.Option("adam", help="adam (trains from scratch reliably) or sgd "
                                  "(momentum, the paper's choice for fine-tuning pretrained "
                                  "trunks)."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (linear warm-up, cosine "
                                       "decay); default 1e-3 for adam, 1e-2 for sgd."),
    momentum: float = typer.Option(0.9, help="SGD momentum."),
    weight_decay: Optional[float] = typer.Option(None, help="Default 0 for adam, 5e-4 for sgd."),
    warmup_epochs: float = typer.Option(0.3),
    learn_upsample: str = typer.Option("intermediate", help="Which upsamplers learn: intermediate "
                                       "(the paper: all but the last), all, none."),
    init: Optional[Path] = typer.Option(None, help="Initialise from a checkpoint: a coarser FCN "
                                        "(staged 32s->16s->8s) or a torchvision-layout "
                                        "VGG16/AlexNet."),
    input_convention: Optional[Literal[tuple(CONVENTIONS)]] = typer.Option(
        None, help="The input the training feeds (docs/models.md): imagenet or caffe "
        "[default: --init's own (another tool's VGG16 file must say), else imagenet]."),
    resume: bool = typer.Option(False, help="Continue the run in --out from its last epoch."),
    skip_bad: SkipBad = False,
    seed: int = typer.Option(0),
):
    """Train an FCN; a checkpoint with its metadata is written atomically after every epoch."""
    from fcn_deploy.models.checkpoint import optimizer_path  # torch
    from fcn_deploy.tasks.train import TrainConfig, train as run_train  # torch

    check_file_output(out, "--out")
    # before the epochs, not after the first one; --resume continues a run in place
    check_outputs([init], [out, optimizer_path(out)])
    dataset = open_data(data, "train", image_size, samples, skip_bad, seed)
    cfg = TrainConfig(arch=arch, width=width, epochs=epochs, batch_size=batch_size,
                      optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay,
                      warmup_epochs=warmup_epochs, crop=crop, mosaic=mosaic,
                      learn_upsample=learn_upsample, seed=seed, input_convention=input_convention)
    run_train(cfg, dataset, out, init=init, resume=resume, log=console.print)
    console.print(f"checkpoint: {out}")


@command
def pretrain(
    out: Path = typer.Option(..., "--out", "-o", help="Classifier checkpoint to write "
                             "(.safetensors, torchvision VGG16 layout)."),
    width: float = typer.Option(0.125, help="Channel width multiplier (1 = VGG16)."),
    samples: int = typer.Option(1024, min=1, help="Training patches (rendered once)."),
    val_samples: int = typer.Option(256, min=1, help="Val patches for the accuracy."),
    epochs: int = typer.Option(10, min=1, help="At lr 1e-3 val accuracy plateaus from ~6."),
    batch_size: int = typer.Option(16, min=1),
    lr: float = typer.Option(1e-3, help="Peak Adam learning rate (warm-up, cosine decay)."),
    seed: int = typer.Option(0),
):
    """Pretrain a VGG16 classifier on synthetic scene patches (the paper's ImageNet VGG16):
    trained with batch norm, folded into a plain VGG16 for `train --init`."""
    from fcn_deploy.tasks.pretrain import PretrainConfig, pretrain_classifier  # torch

    check_file_output(out, "--out")
    cfg = PretrainConfig(width=width, samples=samples, val_samples=val_samples, epochs=epochs,
                         batch_size=batch_size, lr=lr, seed=seed)
    result = pretrain_classifier(cfg, out, console.print)
    console.print(f"classifier: {out} (val accuracy {result['val_acc']:.3f}, "
                  f"{result['train_s']:.0f} s); next: fcn-deploy train --init {out}")


@command
def reproduce(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for report.md, report.json, the "
                             "figure and the checkpoints."),
    seeds: Optional[int] = typer.Option(None, min=1, help="Seeds per stage, 0, 1, ... "
                                        "[default: 2]"),
    epochs: Optional[str] = typer.Option(None, help="Epochs of FCN-32s, FCN-16s, FCN-8s "
                                         "[default: 12,4,3]."),
    image_size: Optional[int] = typer.Option(None, min=32, help="Synthetic scene side "
                                             "[default: 192]."),
    train_samples: Optional[int] = typer.Option(None, min=1, help="Training scenes per epoch "
                                                "[default: 384]."),
    val_samples: Optional[int] = typer.Option(None, min=1, help="Val scenes [default: 96]."),
    pretrain_samples: Optional[int] = typer.Option(None, min=1, help="Classifier training "
                                                   "patches [default: 1024]."),
    pretrain_epochs: Optional[int] = typer.Option(None, min=1, help="Classifier epochs "
                                                  "[default: 10]."),
    amort_size: Optional[int] = typer.Option(None, help="Amortization image side "
                                             "[default: 500, the paper's]."),
    upsampling_variants: Optional[bool] = typer.Option(
        None, help="Also train FCN-16s with every upsampler learned and with none (first seed) "
        "[default: no]."),
    jobs: Optional[int] = typer.Option(None, min=1, help="Seeds trained at once, each in its "
                                       "own process [default: one per seed, up to torch's "
                                       "thread count]."),
    classifier: Optional[Path] = typer.Option(None, help="Start FCN-32s from this classifier "
                                              "(`pretrain` wrote it; make paper gives the "
                                              "repository's) instead of pretraining one."),
    reference: Optional[Path] = typer.Option(None, help="A committed report.json (another "
                                             "machine's run) to compare each stage's mean IU "
                                             "with; make paper gives the repository's."),
):
    """The paper's experiments on the synthetic scenes: classifier -> FCN-32s -> 16s -> 8s,
    boundaries, amortization (and upsampling variants); writes report.md/report.json/figure4.png."""
    from fcn_deploy.tasks.paper_report import write_report  # torch
    from fcn_deploy.tasks.paper_verdict import load_reference, verdict_lines  # json only
    from fcn_deploy.tasks.reproduce import PaperConfig, run_reproduction  # torch

    check_folder_output(out)
    ref = load_reference(reference) if reference else None  # before hours of training
    cfg = PaperConfig.from_cli(epochs=epochs, seeds=seeds, image_size=image_size,
                               train_samples=train_samples, val_samples=val_samples,
                               pretrain_samples=pretrain_samples,
                               pretrain_epochs=pretrain_epochs, amort_size=amort_size,
                               upsampling_variants=upsampling_variants, jobs=jobs,
                               classifier=str(classifier) if classifier else None)
    result = run_reproduction(cfg, out, "fcn-deploy " + " ".join(sys.argv[1:]), console.print)
    for path in write_report(result, out, ref):
        console.print(f"wrote {path}")
    for line in verdict_lines(result["verdicts"]):
        console.print(line)
