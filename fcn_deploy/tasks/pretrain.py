"""Pretraining: a VGG16-layout classifier trained on patches of the synthetic scenes, the
stand-in for the paper's ImageNet VGG16, to be convolutionalized into FCN-32s (``train --init``).

A plain 13-conv trunk trained from scratch barely leaves its initial plateau in a CPU budget;
trained with batch norm it learns within minutes. The batch norms are then folded into the
convolutions (``fold_batch_norm``), so the file is a plain VGG16 in torchvision's layout, and
the FCNs are fine-tuned from it without batch norm, as the paper fine-tunes VGG16.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fcn_deploy.contract.conventions import IMAGENET_MEAN, IMAGENET_STD
from fcn_deploy.contract.hashing import sha256_file
from fcn_deploy.contract.metadata import ArtifactMeta
from fcn_deploy.contract.preprocess import normalize
from fcn_deploy.data.synthetic import ScenePatches
from fcn_deploy.errors import OptionError
from fcn_deploy.models.backbones import fold_batch_norm, vgg16
from fcn_deploy.models.checkpoint import model_metadata, save_checkpoint
from fcn_deploy.progress import progress_bar
from fcn_deploy.tasks.train import TrainConfig, lr_at


@dataclass
class PretrainConfig:
    """Everything that determines a pretraining run (saved in the checkpoint's metadata)."""

    width: float = 0.125
    samples: int = 1024
    val_samples: int = 256
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    warmup_epochs: float = 0.5
    patch_size: int = 224
    style: str = "objects"
    seed: int = 0


def pretrain_classifier(cfg: PretrainConfig, out: str | Path,
                        log: Callable[[str], None] = print) -> dict:
    """Train a VGG16 (with batch norm) on scene patches, fold its batch norms and write it to
    ``out`` in torchvision's layout; returns ``val_acc``, ``train_s`` and ``curve`` (val
    accuracy after each epoch)."""
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    train_set = _rendered(ScenePatches("train", cfg.samples, cfg.patch_size, cfg.seed, cfg.style))
    val_set = _rendered(ScenePatches("val", cfg.val_samples, cfg.patch_size, cfg.seed, cfg.style))
    model = vgg16(ScenePatches.num_classes, cfg.width, batch_norm=True)
    _init_weights(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    schedule = TrainConfig(epochs=cfg.epochs, lr=cfg.lr, warmup_epochs=cfg.warmup_epochs)
    curve = []
    for epoch in range(cfg.epochs):
        loss = _train_epoch(cfg, model, optimizer, schedule, train_set, epoch)
        curve.append(accuracy(model, val_set))
        log(f"vgg16 classifier epoch {epoch + 1}/{cfg.epochs}: loss {loss:.4f}, "
            f"val accuracy {curve[-1]:.3f}")
    folded = fold_batch_norm(model.eval()).eval()
    val_acc = accuracy(folded, val_set)
    meta = ArtifactMeta(arch="vgg16", width=cfg.width, num_classes=ScenePatches.num_classes,
                        class_names=list(ScenePatches.class_names), mean=list(IMAGENET_MEAN),
                        std=list(IMAGENET_STD), epoch=cfg.epochs,
                        extra={"kind": "classifier", "pretrain_config": asdict(cfg),
                               "val_accuracy": val_acc, "curve": curve})
    save_checkpoint(out, folded, meta)
    return {"val_acc": val_acc, "train_s": time.perf_counter() - start, "curve": curve}


def pretrained_classifier(path: str | Path, width: float) -> dict:
    """What a classifier ``pretrain_classifier`` wrote says of itself (``pretrain_config``,
    ``val_acc``, ``curve``, ``sha256``), checked to fit FCNs of ``width`` on the scene classes;
    OptionError saying what does not fit."""
    meta = model_metadata(path)
    if (meta.arch != "vgg16" or meta.extra.get("kind") != "classifier"
            or not {"pretrain_config", "val_accuracy"} <= set(meta.extra)):
        raise OptionError(f"{path} holds a {meta.arch} {meta.extra.get('kind', 'model')}, not "
                          "a VGG16 classifier that `fcn-deploy pretrain` wrote")
    if meta.width != width or meta.class_names != list(ScenePatches.class_names):
        raise OptionError(f"{path} is a width {meta.width:g} classifier of "
                          f"{', '.join(meta.class_names)}; the FCNs need width {width:g} and "
                          f"the scene classes {', '.join(ScenePatches.class_names)}")
    return {"pretrain_config": meta.extra.get("pretrain_config"),
            "val_acc": meta.extra.get("val_accuracy"), "curve": meta.extra.get("curve", []),
            "sha256": sha256_file(path)}


def _rendered(patches: ScenePatches) -> tuple[np.ndarray, np.ndarray]:
    """All patches at once: rendering is the slow part, and every epoch reuses them."""
    with progress_bar(f"render {patches.split} patches", total=len(patches)) as bar:
        items = []
        for i in range(len(patches)):
            items.append(patches[i])
            bar.advance(1)
    return np.stack([x for x, _ in items]), np.array([y for _, y in items])


def _init_weights(model: nn.Module) -> None:
    # torchvision's VGG init: small linear layers keep the first logits near zero.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def _batch(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(normalize(images)).contiguous(memory_format=torch.channels_last)


def _train_epoch(cfg, model, optimizer, schedule, data, epoch: int) -> float:
    images, labels = data
    model.train()
    order = np.random.default_rng([cfg.seed, epoch]).permutation(len(labels))
    steps = -(-len(order) // cfg.batch_size)
    total = 0.0
    with progress_bar(f"pretrain epoch {epoch + 1}/{cfg.epochs}", total=steps,
                      plain_lines=True) as bar:
        for step in range(steps):
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(schedule, epoch + step / steps)
            loss = F.cross_entropy(model(_batch(images[idx])), torch.from_numpy(labels[idx]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            bar.advance(1, status=f"loss {total / ((step + 1) * cfg.batch_size):.4f}")
    return total / len(order)


@torch.inference_mode()
def accuracy(model: nn.Module, data: tuple[np.ndarray, np.ndarray], batch: int = 32) -> float:
    """Top-1 accuracy of ``model`` (put in eval mode) on rendered patches."""
    images, labels = data
    model.eval()
    hits = sum(int((model(_batch(images[i:i + batch])).argmax(1).numpy()
                    == labels[i:i + batch]).sum()) for i in range(0, len(labels), batch))
    return hits / max(len(labels), 1)
