"""Model families: each module under models/families/ declares its architectures without
torch, builds them, and maps its pretrained classifier onto the FCN; the catalog and the CLI's
--arch choices come from them."""
import subprocess
import sys

import pytest
import torch
from helpers import run

from fcn_deploy.errors import OptionError
from fcn_deploy.models import build_model, list_models
from fcn_deploy.models.catalog import ARCHS, families, family_of
from fcn_deploy.models.pretrained import init_from_state


def test_the_catalog_reads_without_torch():
    code = ("import sys; from fcn_deploy.models.catalog import ARCHS; "
            "print(len(ARCHS), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(len(ARCHS)), "False"]
    assert set(ARCHS) == set(list_models()) >= {"fcn8s-vgg16", "fcn32s-alexnet"}
    assert all(a in run("train", "--help").output for a in ARCHS)
    with pytest.raises(OptionError, match="unknown architecture 'fcn4s-vgg16'"):
        family_of("fcn4s-vgg16")


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_builds_with_its_family_and_declared_skips(arch):
    family, spec = family_of(arch), None
    spec = next(a for a in family.archs if a.name == arch)
    model = build_model(arch, 3, 0.0625)
    # FCN-ResNet: a dilated trunk (stride 8), resized by interpolation (no crops)
    dilated = family.name == "resnet"
    assert model.family is family and model.stride == (8 if dilated else 32)
    assert [tap for tap, _ in model.skips] == list(spec.skips)
    assert len(model.crops) == (0 if dilated else len(spec.skips) + 1)
    x = torch.zeros(1, 3, 37, 53)
    assert model.eval()(x).shape == (1, 3, 37, 53)


@pytest.mark.parametrize("name", sorted(families()))
def test_a_family_maps_its_classifier_onto_every_fcn(name):
    family = families()[name]
    torch.manual_seed(0)
    for spec in family.archs:
        classifier = family.classifier(num_classes=5, width=0.0625, arch=spec.name)
        assert family.width_of(classifier.state_dict()) == 0.0625
        assert family.is_classifier(classifier.state_dict())
        model = build_model(spec.name, 5, 0.0625)
        loaded = init_from_state(model, classifier.state_dict(), "clf", same_classes=True)
        # the classifier's scores become score_fr where the FCN scores its fc7 (not FCNHead's)
        assert ("score_fr.weight" in loaded) == ("score_fr.weight" in model.state_dict())
        net = family.convolutionalize(classifier.eval())
        first = next(iter(family.fcn_state(model, net, [])))
        assert torch.equal(model.state_dict()[first], net.state_dict()["features.0.weight"])
