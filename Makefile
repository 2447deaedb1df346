# make demo: set up .venv; pretrain a VGG16 classifier on scene patches, convolutionalize it into
# FCN-32s and train that, then FCN-8s from it (the paper's pipeline, a smaller budget than make
# paper, on 2x2 mosaics of the scenes as there) on synthetic scenes of a few large objects;
# evaluate both; export FCN-8s to FP32/FP16/INT8 ONNX (each verified), build TensorRT-RTX
# engines of the three, compare the artifacts, and bench: amortization vs the sliding-window
# baseline (AlexNet at 224 and 500 px) and latency per artifact (each ONNX file in every
# installed ONNX runtime, and as a static-shape copy).
# make paper: the paper's experiments on synthetic scenes (classifier -> FCN-32s -> 16s -> 8s,
# two seeds; per-epoch curves; boundaries; amortization; a verdict per finding)
# -> runs/paper/report.md.
# make test: set up .venv, build the sdist and wheel, install the wheel in the runtime-only and
# serve venvs, lint with ruff, and run the test suite.
VENV ?= .venv
# The runtime alone (`pip install fcn-deploy[video]`: no torch): tests run ONNX files, predict
# and the edge example app in it without torch.
RUNTIME_VENV ?= .venv-runtime
# The runtime with the serve extra (PyTriton's tritonserver; numpy<2): tests start real Triton
# servers from it.
SERVE_VENV ?= .venv-serve
PY := $(VENV)/bin/python
FCN := $(VENV)/bin/fcn-deploy
STAMP := $(VENV)/.installed-stamp
OUT ?= runs/demo
DATA ?= synthetic:objects
SIZE ?= 192
EPOCHS_PRE ?= 3
EPOCHS32 ?= 3
EPOCHS8 ?= 2
TRAIN := --data $(DATA) --image-size $(SIZE) --samples 384 --mosaic 2 --batch-size 1
PAPER_OUT ?= runs/paper

.PHONY: install demo paper test clean

$(PY):
	python3 -m venv $(VENV)

# torch is pinned here (not in pyproject) so pip takes the CPU wheel on disk, not a CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[torch,dev,plot,trt]"
	# The peers the parity tests compare with (test-only): torchvision's wheels are CUDA builds
	# whose dependencies would replace the CPU torch, torchfcn's pull its trainer's; their model
	# code needs neither (tests/peers.py).
	$(PY) -m pip install --quiet --no-deps torchvision==0.28.0 torchfcn==1.9.7
	touch $(STAMP)

install: $(STAMP)

# The sdist, and the wheel built from it, as users get them; rebuilt when a source changes.
DIST ?= dist
SOURCES := $(shell find fcn_deploy exporters benchmarks -name '*.py') setup.py README.md LICENSE
$(DIST)/.built: $(STAMP) pyproject.toml $(SOURCES)
	rm -rf $(DIST)
	$(PY) -m build --no-isolation --outdir $(DIST) . > /dev/null
	touch $@

# The runtime venvs run the built wheel, not the tree: a module the wheel lacks fails there.
# --force-reinstall --no-deps: the same version number, new files (or an editable install).
$(RUNTIME_VENV)/.installed-stamp: $(DIST)/.built
	test -x $(RUNTIME_VENV)/bin/python || python3 -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/python -m pip install --quiet "$$(ls $(DIST)/*.whl)[video]"
	$(RUNTIME_VENV)/bin/python -m pip install --quiet --force-reinstall --no-deps $(DIST)/*.whl
	touch $@

$(SERVE_VENV)/.installed-stamp: $(DIST)/.built
	test -x $(SERVE_VENV)/bin/python || python3 -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/python -m pip install --quiet "$$(ls $(DIST)/*.whl)[serve]"
	$(SERVE_VENV)/bin/python -m pip install --quiet --force-reinstall --no-deps $(DIST)/*.whl
	touch $@

demo: install
	$(FCN) pretrain --out $(OUT)/vgg16.safetensors --samples 768 --epochs $(EPOCHS_PRE)
	$(FCN) train --arch fcn32s-vgg16 $(TRAIN) --epochs $(EPOCHS32) --init $(OUT)/vgg16.safetensors \
		--out $(OUT)/fcn32s.safetensors
	$(FCN) train --arch fcn8s-vgg16 $(TRAIN) --epochs $(EPOCHS8) --init $(OUT)/fcn32s.safetensors \
		--out $(OUT)/fcn8s.safetensors
	$(FCN) eval $(OUT)/fcn32s.safetensors $(OUT)/fcn8s.safetensors --data $(DATA) --image-size $(SIZE) \
		--json $(OUT)/metrics.json
	$(FCN) export $(OUT)/fcn8s.safetensors -o $(OUT)/fcn8s.onnx
	for p in fp16 int8; do $(FCN) export $(OUT)/fcn8s.safetensors -o $(OUT)/fcn8s_$$p.onnx --precision $$p \
		--calib-data $(DATA) --image-size $(SIZE) || exit 1; done
	for p in fcn8s fcn8s_fp16 fcn8s_int8; do $(FCN) build $(OUT)/$$p.onnx -o $(OUT)/$$p.engine || exit 1; done
	$(FCN) eval $(OUT)/fcn8s.safetensors $(OUT)/fcn8s.onnx $(OUT)/fcn8s_fp16.onnx $(OUT)/fcn8s_int8.onnx \
		--data $(DATA) --image-size $(SIZE) --json $(OUT)/artifacts.json
	$(FCN) bench $(OUT)/fcn8s.safetensors $(OUT)/fcn8s.onnx $(OUT)/fcn8s_fp16.onnx $(OUT)/fcn8s_int8.onnx \
		$(OUT)/fcn8s_fp16.engine --data $(DATA) --image-size $(SIZE) --sizes 256,500 --seconds 1 --static \
		--amortization --amort-models alexnet --amort-sizes 224,500 --out $(OUT)/bench

# FCN-32s starts from the committed classifier (the paper fine-tunes a downloaded VGG16); the
# findings are checked against the committed run's (report.md ends with the verdicts). The whole
# pipeline, pretraining included (+4 min on the EPYC-512):
#   make paper PAPER_CLASSIFIER= PAPER_REFERENCE=$(PAPER_RESULTS)/paper-pretrain/report.json
PAPER_RESULTS := benchmarks/results/cpu-epyc512-2c
PAPER_CLASSIFIER ?= $(PAPER_RESULTS)/paper-pretrain/vgg16-classifier.safetensors
PAPER_REFERENCE ?= $(PAPER_RESULTS)/paper/report.json
paper: install
	$(FCN) reproduce --out $(PAPER_OUT) $(if $(PAPER_CLASSIFIER),--classifier $(PAPER_CLASSIFIER)) \
		--reference $(PAPER_REFERENCE)

test: install $(RUNTIME_VENV)/.installed-stamp $(SERVE_VENV)/.installed-stamp
	$(VENV)/bin/ruff check .
	FCN_RUNTIME_VENV=$(RUNTIME_VENV) FCN_SERVE_VENV=$(SERVE_VENV) FCN_DIST=$(DIST) \
		$(VENV)/bin/pytest -q

clean:
	rm -rf $(VENV) $(RUNTIME_VENV) $(SERVE_VENV) $(DIST) build runs
