"""The paper's nets as pytorch-fcn (torchfcn 1.9.7) defines them: its state dicts and trainer
checkpoints load into fcn-deploy's VGG16 FCNs with the same outputs (at-once FCN-8s with its
pool scales folded into the score layers), and files no architecture here can hold are
refused in one line naming what they are."""
import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, run
from peers import torchfcn_models

from fcn_deploy.contract.conventions import CAFFE_MEAN
from fcn_deploy.contract.metadata import onnx_metadata
from fcn_deploy.contract.preprocess import normalize
from fcn_deploy.exporters.export import load_source
from fcn_deploy.models import build_model, random_init_

PEERS = {"fcn32s-vgg16": "FCN32s", "fcn16s-vgg16": "FCN16s", "fcn8s-vgg16": "FCN8s",
         "fcn8s-atonce-vgg16": "FCN8sAtOnce"}
SIZES = ((97, 131), (160, 120))


def _random_peer(name: str, seed: int = 0) -> torch.nn.Module:
    """torchfcn's net with random weights (its own init zeroes every conv)."""
    torch.manual_seed(seed)
    net = getattr(torchfcn_models(), name)(n_class=21)
    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                torch.nn.init.normal_(m.bias, std=0.1)
    return net.eval()


def _caffe_input(images: np.ndarray) -> torch.Tensor:
    """What pytorch-fcn's data sets feed its nets: BGR, 0-255, minus the Caffe mean."""
    return torch.from_numpy(normalize(images, CAFFE_MEAN, (1, 1, 1), "caffe"))


# Full-width VGG16 (torchfcn has no width): ~14 s each here; at-once FCN-8s covers the most.
FAST = "fcn8s-atonce-vgg16"


@pytest.mark.parametrize("arch", [pytest.param(a, marks=[pytest.mark.slow] * (a != FAST))
                                  for a in PEERS])
def test_state_dicts_load_strictly_with_the_peers_outputs(arch, tmp_path):
    peer = _random_peer(PEERS[arch])
    path = tmp_path / f"{arch}_from_caffe.pth"
    torch.save(peer.state_dict(), path)
    model, meta, _ = load_source(path, arch, None, None, "caffe")
    model.eval()
    for h, w in SIZES:
        x = _caffe_input(np.random.default_rng(h).integers(0, 256, (1, h, w, 3), np.uint8))
        with torch.no_grad():
            want, got = peer(x), model(x)
        assert got.shape == want.shape
        assert (got.argmax(1) == want.argmax(1)).float().mean() >= 0.999
        assert torch.allclose(got, want, rtol=1e-3, atol=1e-3 * want.abs().max())


def test_trainer_checkpoints_load_with_numpy_scalars_only(tmp_path):
    model = random_init_(build_model("fcn32s-vgg16", 21, 0.0625), seed=1)
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 3, "iteration": 900, "arch": "FCN32s", "model_state_dict":
                model.state_dict(), "optim_state_dict": {"state": {}, "param_groups": []},
                "best_mean_iu": np.float64(0.61)}, path)
    loaded, meta, _ = load_source(path, "fcn32s-vgg16", None, None, "caffe")
    assert torch.equal(loaded.score_fr.weight, model.score_fr.weight)
    torch.save(model, tmp_path / "module.pth")  # a pickled nn.Module runs code on load
    result = run("export", tmp_path / "module.pth", "--arch", "fcn32s-vgg16",
                 "--input-convention", "caffe", "-o", tmp_path / "m.onnx")
    assert_one_line_error(result, "pickles Python objects", "torch.nn.modules", "state_dict()")


def _state(**shapes) -> dict:
    return {k.replace("__", "."): torch.zeros(s) for k, s in shapes.items()}


@pytest.mark.parametrize("state, needles", [
    (_state(conv1_1__weight=(4, 3, 3, 3), score_fr_sem__weight=(33, 8, 1, 1),
            score_fr_geo__weight=(3, 8, 1, 1)), ["SIFT Flow", "two heads"]),
    (_state(conv1_1_bgrd__weight=(4, 4, 3, 3)), ["NYUD color-D", "4-channel"]),
    (_state(conv1_1_color__weight=(4, 3, 3, 3), conv1_1_hha__weight=(4, 3, 3, 3)),
     ["NYUD color-HHA", "two streams"]),
    (_state(conv1__weight=(96, 3, 11, 11), conv2__weight=(256, 48, 5, 5)),
     ["CaffeNet FCN-AlexNet", "grouped"]),
])
def test_nets_that_cannot_fit_are_refused_by_what_they_are(tmp_path, state, needles):
    path = tmp_path / "net.pth"
    torch.save(state, path)
    result = run("export", path, "--arch", "fcn8s-vgg16", "--input-convention", "caffe",
                 "-o", tmp_path / "m.onnx")
    assert_one_line_error(result, *needles, "not supported")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("change, needle", [
    (lambda s: s.pop("score_pool3.bias"), "missing tensor score_pool3.bias"),
    (lambda s: s.update(extra=torch.zeros(1)), "unexpected tensor extra"),
])
def test_missing_or_unexpected_tensors_are_named(tmp_path, change, needle):
    state = random_init_(build_model("fcn8s-vgg16", 21, 0.0625), seed=1).state_dict()
    change(state)
    torch.save(state, tmp_path / "net.pth")
    result = run("export", tmp_path / "net.pth", "--arch", "fcn8s-vgg16",
                 "--input-convention", "caffe", "-o", tmp_path / "m.onnx")
    assert_one_line_error(result, needle)


@pytest.mark.slow
@pytest.mark.parametrize("arch", PEERS)
def test_export_then_predict_on_image_files_matches_the_peer(arch, tmp_path):
    from PIL import Image

    peer = _random_peer(PEERS[arch], seed=2)
    path = tmp_path / f"{arch}_from_caffe.pth"
    torch.save(peer.state_dict(), path)
    onnx = tmp_path / "m.onnx"
    result = run("export", path, "--arch", arch, "--input-convention", "caffe", "-o", onnx)
    assert result.exit_code == 0, result.output
    assert onnx_metadata(onnx).convention == "caffe"
    for h, w in SIZES:
        image = np.random.default_rng(w).integers(0, 256, (h, w, 3), np.uint8)
        Image.fromarray(image).save(tmp_path / f"{h}x{w}.png")
        assert run("predict", onnx, tmp_path / f"{h}x{w}.png", "-o", tmp_path / "out",
                   "--no-overlay").exit_code == 0
        with torch.no_grad():
            want = peer(_caffe_input(image[None])).argmax(1)[0].numpy()
        got = np.asarray(Image.open(tmp_path / "out" / f"{h}x{w}.png"))
        assert (got == want).mean() >= 0.999
