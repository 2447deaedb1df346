"""The architecture names an artifact's ``arch`` may hold. The model registry (models/,
torch) builds them; this list lets the torch-free CLI offer and check them."""

ARCHS = ("fcn32s-vgg16", "fcn16s-vgg16", "fcn8s-vgg16", "fcn32s-alexnet")
