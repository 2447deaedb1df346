"""Per-layer INT8 sensitivity: quantize one conv layer at a time against the FP32 graph, measure
label agreement and mean IU change on the evaluation split, rank, and propose a fallback list
(the layers whose INT8 costs most) for ``export --precision int8 --fallback FILE``."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from fcn_deploy.atomic import check_folder_output, check_outputs, write_texts
from fcn_deploy.contract.kinds import require_file, require_onnx
from fcn_deploy.contract.metadata import ArtifactMeta, onnx_metadata
from fcn_deploy.errors import ExportError, FcnDeployError
from fcn_deploy.tasks.evaluate import check_classes, evaluate_onnx, has_labels, label_agreement

from .precision import conv_layers, pre_process, quantize_int8


def quant_report(fp32: Path, calibration: Sequence[np.ndarray], dataset, method: str = "minmax",
                 scheme: str = "s8s8", max_drop_points: float = 0.05, progress=None) -> dict:
    """Rows (one per conv layer, most harmful first) and the fallback list: layers whose INT8
    alone lowers mean IU by more than ``max_drop_points``."""
    def run(path: Path) -> tuple[float, list]:
        result, labels = evaluate_onnx(path, dataset)
        return result["mean_iu"], labels

    fp32_iu, fp32_labels = run(fp32)
    if fp32_iu != fp32_iu:  # NaN: no class present in the data
        raise ExportError("the evaluation data gives no mean IU")
    rows = []
    layers = conv_layers(fp32)
    with tempfile.TemporaryDirectory() as work:
        pre = Path(work) / "pre.onnx"
        pre_process(fp32, pre)  # once, not once per layer
        for layer in layers:
            one = Path(work) / f"{len(rows)}.onnx"
            quantize_int8(pre, one, calibration, method, scheme, only=[layer], upsample="int8",
                          preprocessed=True)
            iu, labels = run(one)
            rows.append({"layer": layer, "mean_iu": iu,
                         "delta_mean_iu_points": 100 * (iu - fp32_iu),
                         "agreement": label_agreement(fp32_labels, labels)})
            if progress:
                progress(layer, rows[-1])
    rows.sort(key=lambda r: (r["delta_mean_iu_points"], r["agreement"]))
    fallback = [r["layer"] for r in rows if r["delta_mean_iu_points"] < -max_drop_points]
    return {"fp32_mean_iu": fp32_iu, "method": method, "scheme": scheme,
            "max_drop_points": max_drop_points, "layers": rows, "fallback": fallback}


def markdown(report: dict) -> str:
    """The ranked table."""
    lines = [f"# INT8 sensitivity ({report['scheme']}, {report['method']} calibration)", "",
             f"FP32 mean IU {report['fp32_mean_iu']:.4f}. Each row quantizes one layer alone.", "",
             "| layer | mean IU | change (points) | label agreement vs FP32 | fallback |",
             "|---|---|---|---|---|"]
    for r in report["layers"]:
        lines.append(f"| {r['layer']} | {r['mean_iu']:.4f} | {r['delta_mean_iu_points']:+.3f} | "
                     f"{r['agreement']:.4%} | "
                     f"{'yes' if r['layer'] in report['fallback'] else ''} |")
    return "\n".join(lines) + "\n"


def read_fallback(path: Path) -> list[str]:
    """Layer names from a fallback file: one per line; blank lines and # comments ignored."""
    lines = require_file(path, ExportError).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


REPORT_FILES = ("quant_report.json", "quant_report.md", "fallback.txt")


def check_source(onnx_file: Path, out: Path) -> ArtifactMeta:
    """``fcn-deploy quant-report``'s checks before any data is read: an FP32 fcn-deploy ONNX
    file, and ``out`` a folder where its files may be written; the file's metadata."""
    check_folder_output(out)
    check_outputs([onnx_file], [out / name for name in REPORT_FILES])
    meta = onnx_metadata(require_onnx(onnx_file, "quant-report"))
    if meta.precision != "fp32":
        raise FcnDeployError(f"{onnx_file} is {meta.precision}; quant-report needs the FP32 ONNX")
    return meta


def write_quant_report(onnx_file: Path, out: Path, meta: ArtifactMeta, dataset,
                       calibration: Sequence[np.ndarray], method: str = "minmax",
                       scheme: str = "s8s8", max_drop_points: float = 0.05,
                       progress=None) -> dict:
    """``quant_report`` of ``onnx_file`` (``meta``: what ``check_source`` returned for it and
    ``out``) written to ``out`` as quant_report.json/.md and fallback.txt (each atomically);
    returns the report."""
    if not has_labels(dataset):
        raise FcnDeployError("quant-report ranks layers by how much each alone lowers mean IU, "
                             "which needs labels, and this folder holds images only: give a "
                             "labelled --data (images/ + masks/, VOC layout or synthetic)")
    check_classes(meta, dataset, onnx_file)
    report = quant_report(onnx_file, calibration, dataset, method, scheme, max_drop_points,
                          progress)
    out.mkdir(parents=True, exist_ok=True)
    write_texts(dict(zip((out / name for name in REPORT_FILES),
                         (json.dumps(report, indent=2), markdown(report),
                          "".join(f"{layer}\n" for layer in report["fallback"])))))
    return report
