"""The padding benchmark (bucketed batching vs one-by-one per size class) on a tiny net: its
report files, and the guard never agreeing less than padding every image."""
import json

from helpers import export_tiny

from fcn_deploy.benchmarks.padding import main


def test_padding_report(tmp_path, capsys):
    onnx = export_tiny(tmp_path / "tiny.onnx", "--eval-samples", "0")
    main([str(onnx), "--buckets", "128,256,512", "--sizes", "1", "--per-size", "3",
          "--threads", "1", "-o", str(tmp_path / "out")])
    result = json.loads((tmp_path / "out" / "padding.json").read_text())
    assert [r["class"] for r in result["rows"]] == ["40-127 px", "128-255 px", "256-511 px"]
    for row in result["rows"]:
        assert row["images"] == 3 and row["sizes"] == 1
        # three images in one execution learn nothing before they run: every answer is unpadded
        assert row["agreement_guarded"] == row["worst_size_guarded"] == 1.0
        assert row["agreement_padded"] <= 1.0 and row["overhead_padded"] > 1.0
    assert "| 40-127 px | 1 | 3 | 100.000% |" in (tmp_path / "out" / "padding.md").read_text()
