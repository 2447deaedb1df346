"""Training: SGD with momentum (or Adam), per-pixel cross entropy ignoring 255, resumable.

Every epoch ends with an atomic checkpoint (weights + metadata, optimizer state beside it).
Epoch ``e`` draws its sample order and dropout masks from ``(seed, e)``, so a run resumed
from epoch ``e`` continues exactly as the uninterrupted run would.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from fcn_deploy.contract.conventions import CONVENTIONS
from fcn_deploy.contract.metadata import ArtifactMeta
from fcn_deploy.contract.preprocess import normalize
from fcn_deploy.data.transforms import Mosaic, batches, random_crop
from fcn_deploy.errors import CheckpointError, DataError, OptionError
from fcn_deploy.metrics import ConfusionMatrix
from fcn_deploy.models import build_model
from fcn_deploy.models.catalog import family_of
from fcn_deploy.models.checkpoint import (
    load_model,
    load_optimizer_state,
    load_state_dict_file,
    read_metadata,
    save_checkpoint,
)
from fcn_deploy.models.foreign import foreign_convention
from fcn_deploy.models.pretrained import init_from_state
from fcn_deploy.progress import progress_bar
from fcn_deploy.tasks.evaluate import has_labels


@dataclass
class TrainConfig:
    """Everything that determines a training run (saved beside the checkpoint)."""

    arch: str = "fcn32s-vgg16"
    width: float = 0.125
    epochs: int = 8
    batch_size: int = 8
    optimizer: str = "adam"
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    warmup_epochs: float = 0.3
    crop: int | None = None
    # k x k training images tiled into one (after --crop): VGG's 100 px conv1 pad costs every
    # image the same, so one 384 px mosaic of four 192 px scenes trains at ~0.6x their cost at
    # 1 thread, ~0.75x at 2
    mosaic: int = 1
    learn_upsample: str = "intermediate"
    seed: int = 0
    # None: the --init file's (recorded, or its family's), else imagenet
    input_convention: str | None = None


# Per-optimizer defaults for lr and weight decay. From scratch, Adam leaves the initial
# plateau of a 15-layer plain net after ~100 steps, SGD (the paper's, made for fine-tuning
# ImageNet weights) after ~270 (FCN-8s, width 0.125, 64x64 synthetic, batch 8).
OPTIMIZER_DEFAULTS = {"adam": (1e-3, 0.0), "sgd": (1e-2, 5e-4)}


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Adam or SGD with momentum (the paper), over the trainable parameters."""
    if cfg.optimizer not in OPTIMIZER_DEFAULTS:
        raise OptionError(f"unknown optimizer {cfg.optimizer!r}; choose adam or sgd")
    params = [p for p in model.parameters() if p.requires_grad]
    lr, wd = _lr(cfg), _weight_decay(cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=wd)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd)


def _lr(cfg: TrainConfig) -> float:
    return OPTIMIZER_DEFAULTS[cfg.optimizer][0] if cfg.lr is None else cfg.lr


def _weight_decay(cfg: TrainConfig) -> float:
    return OPTIMIZER_DEFAULTS[cfg.optimizer][1] if cfg.weight_decay is None else cfg.weight_decay


def lr_at(cfg: TrainConfig, progress: float) -> float:
    """Linear warm-up over ``warmup_epochs``, then cosine decay to zero; progress in epochs."""
    lr = _lr(cfg)
    if progress < cfg.warmup_epochs:
        return lr * (progress + 1e-3) / cfg.warmup_epochs
    span = max(cfg.epochs - cfg.warmup_epochs, 1e-9)
    return lr * 0.5 * (1 + math.cos(math.pi * (progress - cfg.warmup_epochs) / span))


def _convention(cfg: TrainConfig, start: str | Path | None) -> str:
    """The input convention training feeds: the one the weights it starts from learned
    (``start``: --init, or the checkpoint --resume continues; recorded in an fcn-deploy file,
    else its family's or asked for), or imagenet from scratch."""
    if start is None:
        return cfg.input_convention or "imagenet"
    recorded = read_metadata(start)
    if "arch" not in recorded:  # another tool's file
        return foreign_convention(Path(start), family_of(cfg.arch), cfg.input_convention)
    own = recorded.get("convention", "imagenet")
    if cfg.input_convention not in (None, own):
        raise OptionError(f"{start} learned input convention {own} (its metadata); training "
                          f"it with {cfg.input_convention} would feed its weights wrongly: "
                          "drop --input-convention")
    return own


def _check_labelled(train_set) -> None:
    """Training needs label maps and a class count: refuse a set without them in one line."""
    if not has_labels(train_set):
        raise DataError("training needs labels: this folder holds images only; give a folder "
                        "with images/ and masks/ (or VOC layout)")
    if train_set.num_classes is None:
        raise DataError("the images/ + masks/ folder does not say its classes: add "
                        "class_names.txt (one name per line, class 0 first) beside them")


def train(cfg: TrainConfig, train_set, out: str | Path, init: str | Path | None = None,
          resume: bool = False, log: Callable[[str], None] = print,
          on_epoch: Callable[[int], None] | None = None) -> Path:
    """Train ``cfg.arch`` on ``train_set``, checkpointing to ``out`` every epoch (then calling
    ``on_epoch`` with the epochs done, e.g. to evaluate the checkpoint); return its path."""
    out = Path(out)
    _check_labelled(train_set)
    steps = math.ceil(_images_per_epoch(cfg, train_set) / cfg.batch_size)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, train_set.num_classes, cfg.width,
                        learn_upsample=cfg.learn_upsample)
    optimizer = make_optimizer(cfg, model)
    start = 0
    if resume:
        start = _resume(cfg, model, optimizer, out)
        log(f"resumed {out} at epoch {start}")
    elif init is not None:
        state = load_state_dict_file(init)
        same = (model.family.is_classifier(state)
                and read_metadata(init).get("class_names") == list(train_set.class_names))
        loaded = init_from_state(model, state, str(init), same)
    # after the weights fit: a file that does not fit says so before being asked for more
    cfg = replace(cfg, input_convention=_convention(cfg, out if resume else init))
    c = CONVENTIONS[cfg.input_convention]
    if init is not None and not resume:
        note = (" (score_fr too: the classifier has the same classes)"
                if same and "score_fr.weight" in loaded else "")
        log(f"initialised {len(loaded)} tensors of {cfg.arch} from {init}{note}; input "
            f"convention {c.name}")
    meta = ArtifactMeta(arch=cfg.arch, width=cfg.width, num_classes=train_set.num_classes,
                        class_names=list(train_set.class_names), mean=list(c.mean),
                        std=list(c.std), convention=c.name, stride=model.stride,
                        learn_upsample=cfg.learn_upsample, extra={"train_config": asdict(cfg)})
    for epoch in range(start, cfg.epochs):
        loss, cm = _train_epoch(cfg, model, optimizer, train_set, epoch, steps)
        save_checkpoint(out, model, meta.replace(epoch=epoch + 1), optimizer)
        log(f"{cfg.arch} epoch {epoch + 1}/{cfg.epochs}: loss {loss:.4f}, "
            f"train mean IU {cm.compute()['mean_iu']:.3f}")
        if on_epoch is not None:
            on_epoch(epoch + 1)
    if start >= cfg.epochs:
        log(f"{out} already holds all {cfg.epochs} epochs")
    return out


def _resume(cfg: TrainConfig, model, optimizer, out: Path) -> int:
    if not out.exists():
        raise CheckpointError(f"cannot resume: {out} does not exist")
    saved, meta = load_model(out)
    if meta.arch != model.arch or meta.num_classes != model.num_classes:
        raise CheckpointError(f"cannot resume: {out} holds {meta.arch} with "
                              f"{meta.num_classes} classes")
    saved_cfg = meta.extra.get("train_config", {})
    for key in ("width", "optimizer", "learn_upsample"):
        if key in saved_cfg and saved_cfg[key] != getattr(cfg, key):
            raise CheckpointError(f"cannot resume: {out} was trained with {key}="
                                  f"{saved_cfg[key]!r}, this run asks for {getattr(cfg, key)!r}")
    model.load_state_dict(saved.state_dict())
    epoch = load_optimizer_state(out, optimizer)
    if epoch != meta.epoch:
        raise CheckpointError(f"cannot resume: optimizer state of {out} is from epoch {epoch}, "
                              f"weights from epoch {meta.epoch}")
    return epoch


def _images_per_epoch(cfg: TrainConfig, train_set) -> int:
    if cfg.mosaic < 1:
        raise OptionError(f"mosaic {cfg.mosaic}: tile k x k images, k >= 1")
    if len(train_set) < cfg.mosaic ** 2:
        raise DataError(f"a {cfg.mosaic}x{cfg.mosaic} mosaic needs {cfg.mosaic ** 2} training "
                        f"images; the set has {len(train_set)}")
    return len(train_set) // cfg.mosaic ** 2


def _epoch_samples(cfg: TrainConfig, dataset, epoch: int):
    rng = np.random.default_rng([cfg.seed, epoch])
    order = rng.permutation(len(dataset))
    if cfg.crop is not None:
        dataset = _Cropped(dataset, (cfg.crop, cfg.crop), rng)
    if cfg.mosaic > 1:  # a new tiling every epoch, as the order is
        return batches(Mosaic(dataset, cfg.mosaic, order), cfg.batch_size)
    return batches(dataset, cfg.batch_size, order)


class _Cropped:
    def __init__(self, dataset, size, rng):
        self.dataset, self.size, self.rng = dataset, size, rng

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return random_crop(*self.dataset[i], self.size, self.rng)


def _train_epoch(cfg, model, optimizer, dataset, epoch, steps):
    model.train()
    torch.manual_seed(cfg.seed * 100003 + epoch)
    cm, total, count = ConfusionMatrix(model.num_classes), 0.0, 0
    with progress_bar(f"epoch {epoch + 1}/{cfg.epochs}", total=steps, plain_lines=True) as bar:
        for step, (images, masks) in enumerate(_epoch_samples(cfg, dataset, epoch)):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(cfg, epoch + step / steps)
            target = torch.from_numpy(masks).long()
            # NHWC memory, as the images come: the layout (and so the kernels) training always had
            c = CONVENTIONS[cfg.input_convention]
            x = torch.from_numpy(normalize(images, c.mean, c.std, c.name))
            x = x.contiguous(memory_format=torch.channels_last)
            logits = model(x)
            loss = F.cross_entropy(logits, target, ignore_index=255)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(images), count + len(images)
            cm.update(logits.argmax(1), target)
            bar.advance(1, status=f"loss {total / count:.4f} mIU {cm.compute()['mean_iu']:.3f}")
    return total / max(count, 1), cm
