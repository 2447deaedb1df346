#!/bin/bash
# FCN-ResNet50 (full width, random weights): FP32/INT8 ONNX latency at 500x500 in onnxruntime
# and OpenVINO; ResNet-50 amortization at 500 px. Run on an otherwise idle machine.
set -e
cd /tmp/meas
FCN=/work/main/.venv/bin/fcn-deploy
/work/main/.venv/bin/python - <<'PY'
import numpy as np
from PIL import Image
from pathlib import Path
rng = np.random.default_rng(0)
Path("camera").mkdir(exist_ok=True)
for i in range(8):
    Image.fromarray(rng.integers(0, 256, (375, 500, 3), np.uint8)).save(f"camera/{i}.jpg")
PY
$FCN export --random-init --arch fcn-resnet50 -o r50.onnx
$FCN export r50.onnx --precision int8 --calib-data camera --calib-samples 8 --eval-samples 8 -o r50_int8.onnx
$FCN bench r50.onnx r50_int8.onnx --sizes 500 --backends onnxruntime,openvino --seconds 6 --rounds 3 -o bench
$FCN bench --amortization --amort-models resnet:500 --amort-backends torch,onnxruntime -o amort
