#!/usr/bin/env bash
# The GPU figures (benchmarks/results/<gpu>/), run on a lent GPU machine with the repo as the
# working directory, as ../shared/GPU.md describes: nothing is installed there, so the package
# is laid out under /tmp/pkg and run with python3 -P (no cwd on sys.path).
#   phase torch: torch CUDA amortization and FCN-8s latency (FP32 / FP16 / channels_last / graphs)
#   phase trt:   TensorRT-RTX from carried wheels (.whl/a then .whl/b): GPU tests, engines, bench
# DRY=1 runs the same steps small and on the CPU (a check before spending device time).
set -uo pipefail
phase=${1:?phase: torch or trt}
OUT=${OUT:-/tmp/fcn-out}
REPO=$(pwd)
PKG=/tmp/pkg
rm -rf "$PKG" && mkdir -p "$PKG"
cp -r fcn_deploy "$PKG/" && cp -r exporters "$PKG/fcn_deploy/exporters" && cp -r benchmarks "$PKG/fcn_deploy/benchmarks"
export PYTHONPATH="$PKG${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PY:-python3}
FCN="$PY -P -m fcn_deploy.cli"
if [ "${DRY:-0}" = 1 ]; then
  DEV=cpu; W=0.0625; SIZES=64,48x96; AS=224; AB=torch; MODES=fp32,fp32-cl; TRT_MODES=fp32; EXTRA="--iters 2 --warmup 1"
else
  DEV=cuda; W=1; SIZES=500,1024x2048; AS=500,1024; AB=torch,torch-fp16; MODES=fp32,fp16,fp16-cl,fp16-cl-graph; TRT_MODES=fp16-cl-graph; EXTRA="--seconds 1"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
fi
mkdir -p "$OUT"

if [ "$phase" = torch ]; then
  [ -d .whl/a ] && cp .whl/a/* /tmp/  # first half of the TensorRT-RTX libs wheel, for phase trt
  $FCN bench --out "$OUT/torch" --device $DEV --amortization --amort-models alexnet,vgg16 \
    --amort-sizes $AS --amort-backends $AB --arch fcn8s-vgg16 --width $W --sizes $SIZES \
    --batches 1,8 --torch-modes $MODES $EXTRA 2>&1 | tee "$OUT/torch.log"
  exit
fi

# phase trt
if [ "${DRY:-0}" != 1 ]; then
  if [ ! -d /tmp/site/tensorrt_rtx_libs ]; then
    cat /tmp/libs.part.aa .whl/b/libs.part.ab > /tmp/tensorrt_rtx_cu13_libs-1.7.1.116-py3-none-manylinux_2_28_x86_64.whl
    $PY -m pip install -q --no-index --no-deps --target /tmp/site /tmp/tensorrt_rtx_cu13_libs-*.whl .whl/b/*.whl
  fi
  # The tensorrt_rtx package itself comes from an sdist (built at install); its pure-Python
  # files travel in .whl/c, copied from a local install of the same version.
  cp -r .whl/c/tensorrt_rtx /tmp/site/
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
CC=$([ $DEV = cuda ] && echo CURRENT || echo SM86)
$PY -P -c "import tensorrt_rtx as t; print('tensorrt_rtx', t.__version__)" 2>&1 | tee "$OUT/trt.log"
(cd /tmp && $PY -P -m pytest -q -p no:cacheprovider -c "$REPO/pyproject.toml" --rootdir "$REPO" \
  -m "gpu or not gpu" "$REPO/tests/runtime" 2>&1 | tail -25) | tee -a "$OUT/trt.log"
D=/tmp/demo && mkdir -p $D
{
  $FCN export runs/demo/fcn8s.safetensors -o $D/fcn8s.onnx
  $FCN export runs/demo/fcn8s.safetensors -o $D/fcn8s_fp16.onnx --precision fp16
  $FCN build $D/fcn8s_fp16.onnx -o $D/fcn8s_fp16.engine --compute-capability $CC
  $FCN eval $D/fcn8s.onnx $D/fcn8s_fp16.engine --json "$OUT/trt_eval.json"
  $FCN export --random-init --arch fcn8s-vgg16 --width $W -o $D/full_fp16.onnx --precision fp16 --eval-samples 0
  $FCN build $D/full_fp16.onnx -o $D/full_fp16.engine --compute-capability $CC \
    --min 1x3x256x256 --opt 1x3x500x500 --max 8x3x1024x1024
  $FCN bench $D/full_fp16.engine --arch fcn8s-vgg16 --width $W --torch-modes $TRT_MODES \
    --out "$OUT/trt" --device $DEV --cuda-graph --sizes 500,1024 --batches 1,8 $EXTRA
} 2>&1 | tee -a "$OUT/trt.log"
