import pytest
import torch
from torch import nn

from fcn_deploy.models import alexnet, vgg16
from fcn_deploy.models.convolutionalize import convolutionalize


class ToyClassifier(nn.Module):
    """A classifier without zero padding: its FCN must equal it on every patch exactly."""

    def __init__(self, classes=5):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(4, 6, 3), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Linear(6 * 3 * 3, 16), nn.ReLU(), nn.Dropout(),
                                        nn.Linear(16, classes))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def test_padding_free_classifier_equals_fcn_on_a_grid_of_patches():
    torch.manual_seed(0)
    clf = ToyClassifier().double().eval()
    fcn = convolutionalize(clf, 18).eval()
    assert fcn.stride == 4 and fcn.patch_size == (18, 18)
    x = torch.randn(2, 3, 18 + 4 * 5, 18 + 4 * 7, dtype=torch.float64)
    with torch.no_grad():
        cmap = fcn(x)
        assert cmap.shape == (2, 5, 6, 8)
        for i in range(6):
            for j in range(8):
                patch = x[:, :, 4 * i:4 * i + 18, 4 * j:4 * j + 18]
                assert torch.allclose(cmap[:, :, i, j], clf(patch), atol=1e-12, rtol=0)


@pytest.mark.parametrize("build,fc_index", [(vgg16, 0), (alexnet, 1)])
def test_equals_the_classifier_at_its_input_size(build, fc_index):
    torch.manual_seed(0)
    clf = build(num_classes=10, width=0.125).eval()
    fcn = convolutionalize(clf, 224).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(fcn(x).flatten(1), clf(x), atol=1e-5)
        assert fcn(torch.randn(1, 3, 500, 500)).shape[1] == 10
    first = fcn.classifier[fc_index]
    assert (isinstance(first, nn.Conv2d)
            and first.kernel_size == ((7, 7) if build is vgg16 else (6, 6)))
    assert fcn.stride == 32
    # Copies, not shared parameters.
    assert first.weight.data_ptr() != clf.classifier[fc_index].weight.data_ptr()


def test_avgpool_that_is_not_the_identity_is_refused():
    clf = vgg16(width=1 / 16)
    with pytest.raises(ValueError, match="not the identity"):
        convolutionalize(clf, 256)


def test_unsupported_classifier_layer_is_refused():
    clf = ToyClassifier()
    clf.classifier.insert(1, nn.BatchNorm1d(16))
    with pytest.raises(TypeError, match="BatchNorm1d"):
        convolutionalize(clf, 18)
