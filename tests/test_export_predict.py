"""Export (ONNX, int8, TorchScript) with its parity check, and ``graft predict``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import graft
from graft.cli import app
from graft.errors import ConfigError, DataError
from graft.export import export_model
from graft.training import LinearOptions, NeuralOptions, train_linear, train_neural
from synthetic import write_class_folders

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export") / "data"
    write_class_folders(root / "train", 12)
    write_class_folders(root / "validation", 6, start=100)
    return root


@pytest.fixture(scope="module")
def linear_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("linear") / "run"
    train_linear(data, out=out, options=LinearOptions(engine="torch"))
    return out


@pytest.fixture(scope="module")
def neural_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("neural") / "run"
    options = NeuralOptions(
        strategy="finetune",
        epochs=2,
        freeze_epochs=1,
        augment="none",
        engine="torch",
        workers=0,
        batch_size=4,
    )
    train_neural(data, out=out, options=options)
    return out


def _validation_images(data: Path) -> list[Path]:
    return sorted((data / "validation").rglob("*.png"))


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["linear_run", "neural_run"])
def test_onnx_export_carries_labels_and_matches_pytorch(
    fixture: str, request: pytest.FixtureRequest, data: Path
) -> None:
    run: Path = request.getfixturevalue(fixture)
    result = export_model(run, format="onnx")
    assert result.path == run / "model.onnx" and result.checked > 0
    assert result.max_difference <= 1e-3 and result.agreement == 1.0
    meta = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert json.loads(meta["labels"]) == ["blue", "red"]
    assert json.loads(meta["preprocessing"])["input_size"] == 224
    assert "uint8" in json.loads(meta["graft"])["input"]
    images = _validation_images(data)
    onnx_labels = [p.label for p in graft.load(run, backend="onnx").predict(images)]
    torch_labels = [p.label for p in graft.load(run, backend="torch").predict(images)]
    assert onnx_labels == torch_labels


@pytest.mark.slow
def test_int8_export_reports_both_accuracies(linear_run: Path) -> None:
    result = export_model(linear_run, format="onnx", int8=True)
    assert result.path.name == "model.int8.onnx" and result.agreement >= 0.95
    assert set(result.accuracy) == {"float", "int8", "images"} and result.accuracy["images"] == 12
    assert abs(result.accuracy["int8"] - result.accuracy["float"]) <= 0.1


def test_torchscript_export(neural_run: Path) -> None:
    result = export_model(neural_run, format="torchscript")
    extra = {"graft.json": ""}
    module = torch.jit.load(str(result.path), _extra_files=extra)
    assert json.loads(extra["graft.json"])["labels"] == ["blue", "red"]
    probabilities = module(torch.zeros((2, 3, 224, 224), dtype=torch.uint8))
    assert probabilities.shape == (2, 2)
    assert torch.allclose(probabilities.sum(1), torch.ones(2), atol=1e-5)


def test_a_failing_check_removes_the_file(
    linear_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from graft import export as export_module

    def always_blue(path: Path) -> object:  # an "exported model" that ignores its input
        return lambda pixels: np.tile([0.99, 0.01], (len(pixels), 1))

    monkeypatch.setattr(export_module, "_onnx_runner", always_blue)
    target = linear_run / "broken.onnx"
    with pytest.raises(DataError, match="disagrees with PyTorch"):
        export_model(linear_run, format="onnx", out=target)
    assert not target.exists()


def test_a_refused_int8_export_names_the_fix(
    linear_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from graft import export as export_module

    def no_quantization(source: Path, target: Path, *training: object) -> dict[str, object]:
        target.write_bytes(Path(source).read_bytes())  # the fault is injected in the runner
        return {}

    def always_blue(path: Path) -> object:
        return lambda pixels: np.tile([0.99, 0.01], (len(pixels), 1))

    monkeypatch.setattr(export_module, "quantize_onnx_controlled", no_quantization)
    monkeypatch.setattr(export_module, "_onnx_runner", always_blue)
    with pytest.raises(DataError, match="export without --int8") as refused:
        export_model(linear_run, format="onnx", int8=True)
    assert "top-1 agreement" in str(refused.value) and "\n" not in str(refused.value)
    assert not (linear_run / "model.int8.onnx").exists()


def _broken_quantizer(source: Path, target: Path, *training: object) -> dict[str, object]:
    """An injected fault: "quantization" that zeroes the classifier's weight, so every image
    gets the same prediction."""
    model = onnx.load(str(source))
    last = [n for n in model.graph.node if n.op_type in ("Gemm", "MatMul")][-1]
    for tensor in model.graph.initializer:
        if tensor.name == last.input[1]:
            zeros = np.zeros_like(onnx.numpy_helper.to_array(tensor))
            tensor.CopyFrom(onnx.numpy_helper.from_array(zeros, tensor.name))
    onnx.save(model, str(target))
    return {}


def test_int8_that_loses_accuracy_is_refused_whatever_its_agreement(
    linear_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the agreement limit off, the accuracy drop alone refuses a broken int8 model."""
    from graft import export as export_module

    monkeypatch.setattr(export_module, "quantize_onnx_controlled", _broken_quantizer)
    monkeypatch.setattr(export_module, "INT8_AGREEMENT", 0.0)
    target = tmp_path / "m.onnx"
    with pytest.raises(DataError, match=r"accuracy -\d+\.\d\d points on 12 images\)") as refused:
        export_model(linear_run, format="onnx", int8=True, out=target)
    assert "at most 0.5 points of accuracy may go" in str(refused.value)
    assert not target.exists()


def test_bad_export_options(linear_run: Path) -> None:
    with pytest.raises(ConfigError, match="--int8 applies to ONNX"):
        export_model(linear_run, format="torchscript", int8=True)
    with pytest.raises(ConfigError, match="--format 'tflite'"):
        export_model(linear_run, format="tflite")  # type: ignore[arg-type]


def test_onnx_backend_needs_an_export(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "fresh"
    train_linear(data, out=run, options=LinearOptions(engine="torch"))
    with pytest.raises(DataError, match="no exported model; run `graft export"):
        graft.load(run, backend="onnx")


def test_predict_cli_streams_csv_and_reports_bad_files(
    linear_run: Path, data: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    for image in _validation_images(data)[:5]:
        (folder / image.name).write_bytes(image.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n")
    out = tmp_path / "predictions.csv"
    result = runner.invoke(
        app,
        [
            "predict",
            str(linear_run),
            str(folder),
            "--out",
            str(out),
            "--top-k",
            "2",
            "--backend",
            "torch",
        ],
    )
    assert result.exit_code == 1
    assert "broken.png" in result.output
    rows = out.read_text().splitlines()
    assert rows[0] == "path,label,confidence,top2" and len(rows) == 6
    as_json = runner.invoke(
        app,
        ["predict", str(linear_run), str(folder / "blue_100.png"), "--json", "--backend", "torch"],
    )
    assert as_json.exit_code == 0
    (entry,) = json.loads(as_json.stdout)
    assert entry["predictions"][0]["label"] == "blue"


def test_export_cli(linear_run: Path) -> None:
    result = runner.invoke(
        app, ["export", str(linear_run), "--format", "onnx", "--out", str(linear_run / "cli.onnx")]
    )
    assert result.exit_code == 0, result.output
    assert "top-1 agreement 100.0%" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["linear_run", "neural_run"])
def test_every_engine_backend_predicts_the_same(
    fixture: str, request: pytest.FixtureRequest, data: Path
) -> None:
    run: Path = request.getfixturevalue(fixture)
    images = _validation_images(data)
    reference = graft.load(run, backend="torch").predict_proba(images)
    for backend in ("onnxruntime", "openvino"):
        probabilities = graft.load(run, backend=backend).predict_proba(images)
        np.testing.assert_allclose(probabilities, reference, atol=1e-3)


@pytest.mark.slow
def test_a_run_over_backbones_of_two_input_sizes_is_one_network(data: Path, tmp_path: Path) -> None:
    """efficientnet_lite0 takes 224 px and lite1 240 px: the run's network takes 240 px and
    resizes inside for lite0, agrees with the predictor (which resizes each file once per
    backbone), and exports."""
    out = tmp_path / "run"
    options = LinearOptions(backbone="efficientnet_lite0,efficientnet_lite1", engine="torch")
    train_linear(data, out=out, options=options)
    predictor = graft.load(out, backend="torch")
    model = predictor.model
    assert model.preprocessing.input_size == 240
    images = _validation_images(data)
    rgb = [Image.open(p).convert("RGB") for p in images]
    prepared = [predictor.prepare(image) for image in rgb]
    assert [tuple(t.shape) for t in prepared[0]] == [(3, 224, 224), (3, 240, 240)]
    pixels = torch.stack([p[1] for p in prepared])
    with torch.no_grad():
        got = model(pixels).softmax(1).numpy()
    want = predictor.probabilities(rgb)
    assert np.abs(got - want).max() < 0.02
    result = export_model(out, format="onnx")
    assert result.agreement == 1.0 and result.max_difference <= 1e-3
