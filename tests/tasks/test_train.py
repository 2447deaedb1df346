import json

import pytest
import torch
from safetensors import safe_open

from fcn_deploy.data.synthetic import SyntheticShapes
from fcn_deploy.errors import CheckpointError, DataError
from fcn_deploy.models.checkpoint import load_model, optimizer_path, read_metadata
from fcn_deploy.tasks.train import TrainConfig, lr_at, train

DATA = SyntheticShapes("train", length=8, size=(40, 48), seed=3)


def _cfg(**kw):
    base = dict(arch="fcn8s-vgg16", width=1 / 16, epochs=2, batch_size=4, optimizer="sgd", lr=0.01)
    return TrainConfig(**{**base, **kw})


def _weights(path):
    model, _ = load_model(path)
    return model.state_dict()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path, optimizer):
    full = train(_cfg(optimizer=optimizer), DATA, tmp_path / "full.safetensors", log=lambda s: None)
    part = tmp_path / "part.safetensors"

    def interrupt(line):  # kill the run right after its first epoch's checkpoint
        raise KeyboardInterrupt(line)

    with pytest.raises(KeyboardInterrupt, match="epoch 1/2"):
        train(_cfg(optimizer=optimizer), DATA, part, log=interrupt)
    assert read_metadata(part)["epoch"] == 1
    train(_cfg(optimizer=optimizer), DATA, part, resume=True, log=lambda s: None)
    a, b = _weights(full), _weights(part)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Training moved the weights at all (the score layers start at zero).
    assert a["score_fr.weight"].abs().sum() > 0


def test_fixed_seed_same_result(tmp_path):
    a = train(_cfg(epochs=1), DATA, tmp_path / "a.safetensors", log=lambda s: None)
    b = train(_cfg(epochs=1), DATA, tmp_path / "b.safetensors", log=lambda s: None)
    wa, wb = _weights(a), _weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_checkpoint_describes_itself(tmp_path):
    path = train(_cfg(epochs=1), DATA, tmp_path / "m.safetensors", log=lambda s: None)
    meta = read_metadata(path)
    assert meta["arch"] == "fcn8s-vgg16" and meta["width"] == 1 / 16
    assert meta["num_classes"] == 7 and meta["class_names"][0] == "background"
    assert len(meta["mean"]) == 3 and meta["epoch"] == 1
    assert optimizer_path(path).exists()
    with safe_open(str(path), "pt") as f:
        assert json.loads(f.metadata()["arch"]) == "fcn8s-vgg16"
    # No temporary files left beside the checkpoint.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.optim.safetensors", "m.safetensors"]


def test_resume_without_checkpoint_fails_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        train(_cfg(), DATA, tmp_path / "none.safetensors", resume=True, log=lambda s: None)


def test_learning_rate_warms_up_then_decays():
    cfg = _cfg(epochs=10, lr=0.1, warmup_epochs=1)
    assert lr_at(cfg, 0) < 0.001 and lr_at(cfg, 1) == pytest.approx(0.1)
    assert lr_at(cfg, 5.5) == pytest.approx(0.05)
    assert lr_at(cfg, 10) == pytest.approx(0, abs=1e-12)


def test_mosaic_training_is_deterministic_and_differs_from_single_scenes(tmp_path):
    a, b, c = (train(_cfg(epochs=1, batch_size=1, mosaic=m), DATA, tmp_path / f"{i}.safetensors",
                     log=lambda s: None) for i, m in enumerate((2, 2, 1)))
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not torch.equal(wa["score_fr.weight"], wc["score_fr.weight"])


def test_mosaic_needs_enough_images(tmp_path):
    with pytest.raises(DataError, match="needs 9 training images; the set has 8"):
        train(_cfg(mosaic=3), DATA, tmp_path / "m.safetensors", log=lambda s: None)
