"""The command line: JSON contracts, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from typer.testing import CliRunner

from graft.cli import app

runner = CliRunner()


def test_backbones_json() -> None:
    result = runner.invoke(app, ["backbones", "--json"])
    assert result.exit_code == 0
    listing = json.loads(result.stdout)
    by_name = {entry["name"]: entry for entry in listing}
    assert by_name["efficientnet_lite0.in1k"]["available"] is True
    assert by_name["resnet50"]["source"] == "random"


def test_backbones_table() -> None:
    result = runner.invoke(app, ["backbones"])
    assert result.exit_code == 0
    assert "efficientnet_lite0.in1k" in result.stdout


def test_classify_json_and_exit_code(tmp_path: Path, photos: dict[str, Path]) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff")
    result = runner.invoke(
        app, ["classify", str(photos["chelsea"]), str(broken), "--json", "-k", "3"]
    )
    assert result.exit_code == 1
    documents = json.loads(result.stdout)
    assert [len(d["predictions"]) for d in documents] == [3, 0]
    assert set(documents[0]["predictions"][0]) >= {"label", "probability"}
    assert "broken.jpg" in documents[1]["error"]


def test_classify_table(photos: dict[str, Path]) -> None:
    result = runner.invoke(app, ["classify", str(photos["coffee"]), "-k", "1"])
    assert result.exit_code == 0
    assert "espresso" in result.stdout


@pytest.mark.slow
def test_weights_add_round_trip_through_the_cli(tmp_path: Path, photos: dict[str, Path]) -> None:
    good = tmp_path / "resnet50.pth"
    torch.save(timm.create_model("resnet50").state_dict(), good)
    added = runner.invoke(app, ["weights", "add", str(good), "--backbone", "resnet50"])
    assert added.exit_code == 0, added.output
    assert "stored resnet50.user" in added.stdout
    classified = runner.invoke(
        app, ["classify", str(photos["chelsea"]), "--backbone", "resnet50", "--json"]
    )
    assert classified.exit_code == 0, classified.output
    assert len(json.loads(classified.stdout)[0]["predictions"]) == 5


@pytest.mark.slow
def test_errors_are_one_line_with_exit_code_2(tmp_path: Path, photos: dict[str, Path]) -> None:
    """Run the real console script so the top-level error handler is exercised."""
    bad = tmp_path / "r18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), bad)
    process = subprocess.run(
        [sys.executable, "-m", "graft", "weights", "add", str(bad), "--backbone", "resnet50"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert process.returncode == 2
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing keys" in lines[0]
    unknown = subprocess.run(
        [
            sys.executable,
            "-m",
            "graft",
            "classify",
            str(photos["chelsea"]),
            "-b",
            "efficentnet_lite0",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert unknown.returncode == 2
    assert "did you mean efficientnet_lite0" in unknown.stderr


@pytest.mark.slow
def test_demo_runs_offline() -> None:
    """``graft demo`` in the test process itself, after whatever engines earlier tests built
    (its fine-tune's decoding workers no longer fork a process that runs engine threads).

    ``--quick`` runs the same three steps on a fifth of the cells (the full demo's eight minutes
    were a fifth of the suite); its time and figures are measured by hand (README). A budget
    that steps 1 and 2 already spend leaves the fine-tune no epoch (its final evaluation is
    reserved first): it says so and ends as its start, the probe."""
    result = CliRunner().invoke(app, ["demo", "--quick", "--budget", "1s"])
    assert result.exit_code == 0, result.output[-3000:]
    output = " ".join(result.output.split())
    assert "epoch 1/4" not in output
    assert "to end within the demo's budget of 1 s, the fine-tune skipped head epoch 1" in output
    assert "safeguard: kept the linear probe" in output
    assert "the demo took" in output
    assert "chelsea" in result.output and "espresso" in result.output
    assert "--quick: 526 of the 2,624 cells" in result.output
    # both ELPV steps ran to their summary lines, on the quick run's own folder
    assert "ELPV linear probe: test accuracy" in result.output
    assert "ELPV fine-tune: test accuracy" in result.output
    assert "graft linear probe (step 2)" in result.output
    assert "demo-quick" in result.output


def test_the_demo_reserves_its_evaluation_at_the_speed_step_2_measured() -> None:
    """Step 3 keeps time for its final evaluation at the rate step 2 extracted features on this
    machine (decoding included); a rerun served from the cache measured nothing."""
    import json

    from graft.cli.demo import DemoData, _step_2_speed
    from graft.config import cache_dir
    from graft.runs import CONFIG

    data = DemoData([], quick=True)
    assert _step_2_speed(data) is None  # no step 2 yet
    config = cache_dir() / data.folder / "elpv-linear" / CONFIG
    config.parent.mkdir(parents=True)
    record = {"extraction": {"computed": 800, "cached": 0}, "timings_s": {"extract": 20.0}}
    config.write_text(json.dumps(record))
    assert _step_2_speed(data) == 40.0
    record["extraction"]["cached"] = 4000  # a rerun: its seconds were mostly cache reads
    config.write_text(json.dumps(record))
    assert _step_2_speed(data) is None


def test_looking_up_backbones_does_not_import_torch() -> None:
    """Start-up stays fast: embedded records and the CLI's import need no PyTorch."""
    code = (
        "import sys, graft, graft.cli; graft.get_backbone('efficientnet_lite0.in1k'); "
        "print('torch' in sys.modules)"
    )
    process = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert process.stdout.strip() == "False"


def test_train_option_defaults_are_the_options_dataclasses_defaults() -> None:
    """A default lives in the options dataclasses; ``graft train``'s options are checked against
    them (the CLI's ``auto`` device is the options' ``None``; ``--batch-size`` left out means
    each strategy's own; ``--strategy`` defaults as ``graft.train`` does)."""
    import dataclasses
    import inspect

    from graft.api import train as api_train
    from graft.cli import train_cmd
    from graft.data.prepare import DataOptions
    from graft.training import LinearOptions, NeuralOptions

    cli = {
        name: parameter.default.default
        for name, parameter in inspect.signature(train_cmd.train).parameters.items()
    }
    assert cli["strategy"] == inspect.signature(api_train).parameters["strategy"].default
    assert cli["batch_size"] is None
    checked = 0
    for kind in (LinearOptions, NeuralOptions, DataOptions):
        base = kind()
        for field in dataclasses.fields(kind):
            if field.name not in cli or field.name in ("strategy", "batch_size"):
                continue
            given = None if (field.name, cli[field.name]) == ("device", "auto") else cli[field.name]
            assert dataclasses.replace(base, **{field.name: given}) == base, field.name
            checked += 1
    assert checked >= 40
