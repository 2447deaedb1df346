import json

import pytest
from helpers import assert_one_line_error, run, tiny_meta

from fcn_deploy.contract.metadata import ArtifactMeta, EngineInfo, from_props, onnx_metadata
from fcn_deploy.errors import ArtifactError


def test_round_trip_keeps_unknown_keys():
    meta = tiny_meta(precision="int8", int8_scheme="s8s8").replace(from_a_newer_version={"x": 1})
    props = meta.to_props()
    assert json.loads(props["from_a_newer_version"]) == {"x": 1}
    again = from_props(props, "m.onnx")
    assert again == meta and again.extra == {"from_a_newer_version": {"x": 1}}
    assert again.input.height == [1, None]  # any size: no upper limit


def test_engine_keys_round_trip_and_must_be_complete():
    engine = EngineInfo(backend="tensorrt_rtx", backend_version="1.7", profiles=[], inputs=[],
                        outputs=[], engine_sha256="ab", engine_bytes=3, build_seconds=0.5)
    flat = tiny_meta(engine=engine).to_dict()
    assert flat["engine_sha256"] == "ab" and "engine" not in flat  # flat on disk, as before
    assert ArtifactMeta.from_dict(flat, "m.engine.json").engine == engine
    del flat["profiles"]
    with pytest.raises(ArtifactError, match="m.engine.json: its engine metadata is incomplete"):
        ArtifactMeta.from_dict(flat, "m.engine.json")


def test_a_missing_required_key_is_one_clear_error(checkpoint, tmp_path):
    import onnx

    path = tmp_path / "m.onnx"
    assert run("export", checkpoint, "-o", path).exit_code == 0
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key not in ("mean", "std")]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(path))
    with pytest.raises(ArtifactError, match="lacks mean, std"):
        onnx_metadata(path)
    assert_one_line_error(run("info", path), "m.onnx: its fcn-deploy metadata lacks mean, std")


def test_fp16_and_int8_conversions_keep_unknown_keys(checkpoint, tmp_path):
    import onnx

    from fcn_deploy.exporters.onnx_export import write_metadata
    from fcn_deploy.exporters.precision import convert_fp16

    path = tmp_path / "m.onnx"
    assert run("export", checkpoint, "-o", path).exit_code == 0
    model = onnx.load(str(path))
    write_metadata(model, onnx_metadata(path).replace(deployment_note="keep me"))
    onnx.save(model, str(path))
    convert_fp16(path, tmp_path / "half.onnx")
    half = onnx_metadata(tmp_path / "half.onnx")
    assert half.precision == "fp16" and half.extra["deployment_note"] == "keep me"
