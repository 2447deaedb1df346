# make demo: set up .venv and train + evaluate FCN-32s and FCN-8s on synthetic data.
# make test: set up .venv and run the test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
FCN := $(VENV)/bin/fcn-deploy
STAMP := $(VENV)/.installed-stamp
OUT ?= runs/demo
EPOCHS32 ?= 6
EPOCHS8 ?= 8

.PHONY: install demo test clean

$(PY):
	python3 -m venv $(VENV)

# torch is pinned here (not in pyproject) so pip takes the CPU wheel on disk, not a CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev,plot]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(FCN) train --arch fcn32s-vgg16 --epochs $(EPOCHS32) --out $(OUT)/fcn32s.safetensors
	$(FCN) train --arch fcn8s-vgg16 --epochs $(EPOCHS8) --init $(OUT)/fcn32s.safetensors \
		--out $(OUT)/fcn8s.safetensors
	$(FCN) eval $(OUT)/fcn32s.safetensors $(OUT)/fcn8s.safetensors --json $(OUT)/metrics.json

test: install
	$(VENV)/bin/pytest -q

clean:
	rm -rf $(VENV) runs
