"""Reports and comparisons: contents, offline self-containment, resume, and a real browser."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import graft
from graft.data.prepare import DataOptions
from graft.errors import ConfigError
from graft.evaluation.interpret import gradcam, gradcam_model
from graft.ladder.compare import compare, parse_imagenet_map
from graft.training import LinearOptions, NeuralOptions, train_linear, train_neural
from synthetic import write_class_folders

QUICK = {
    "engine": "torch",
    "workers": 0,
    "batch_size": 4,
    "epochs": 2,
    "freeze_epochs": 1,
    "augment": "none",
}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reports") / "data"
    write_class_folders(root / "train", 10)
    write_class_folders(root / "validation", 6, start=100)
    return root


@pytest.fixture(scope="module")
def linear_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("linear") / "run"
    train_linear(data, out=out, options=LinearOptions(engine="torch"))
    return out


@pytest.fixture(scope="module")
def finetune_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("finetune") / "run"
    train_neural(data, out=out, options=NeuralOptions(strategy="finetune", **QUICK))
    return out


@pytest.fixture(scope="module")
def comparison(
    data: Path, tmp_path_factory: pytest.TempPathFactory
) -> graft.ladder.compare.Comparison:
    out = tmp_path_factory.mktemp("compare") / "cmp"
    return compare(
        data,
        out=out,
        strategies=["linear", "head"],
        imagenet_map=parse_imagenet_map("red=0-499,blue=500-999"),
        train_options=QUICK,
    )


def _assert_self_contained(html: str) -> None:
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html), "external resource"
    assert "@import" not in html and "url(" not in html
    sources = re.findall(r'<img[^>]*src="([^"]+)"', html)
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)


def test_evaluate_json_has_interpretation(linear_run: Path) -> None:
    result = graft.evaluate(linear_run)
    assert result["split"] == "val" and result["n"] == 12
    assert {"intervals", "roc_auc", "log_loss", "ece", "top_losses", "confused_pairs"} <= set(
        result
    )
    assert len(result["top_losses"]) == 12
    losses = [item["loss"] for item in result["top_losses"]]
    assert losses == sorted(losses, reverse=True)


@pytest.mark.slow
def test_linear_run_report(linear_run: Path) -> None:
    result = graft.evaluate(linear_run, report=True)
    report = Path(result["report"])
    html = report.read_text()
    _assert_self_contained(html)
    for heading in (
        "Metrics",
        "Data",
        "Confusion matrix",
        "ROC and precision-recall",
        "Calibration",
        "Sample predictions",
        "top losses",
        "Configuration",
    ):
        assert heading in html
    assert "no learning curves" in html
    assert "Grad-CAM overlays" in html  # a logistic-regression head on a CNN is differentiable
    plots = {p.name for p in (linear_run / "evaluation").iterdir()}
    assert {
        "confusion_matrix.png",
        "roc_pr.png",
        "reliability.png",
        "sample_predictions.png",
        "top_losses.png",
    } <= plots


@pytest.mark.slow
def test_finetune_run_report_has_learning_curves(finetune_run: Path) -> None:
    report = Path(graft.evaluate(finetune_run, report=True)["report"])
    _assert_self_contained(report.read_text())
    assert (finetune_run / "evaluation" / "learning_curves.png").is_file()


def test_gradcam_maps_are_normalised_and_class_specific(finetune_run: Path) -> None:
    parts = gradcam_model(graft.load(finetune_run))
    assert parts is not None
    pixels = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)
    cams = gradcam(parts, pixels, [0, 0])
    other = gradcam(parts, pixels, [1, 1])
    assert cams.shape == (2, 7, 7) and cams.min() >= 0 and np.allclose(cams.max(axis=(1, 2)), 1.0)
    assert not np.allclose(cams, other)


@pytest.mark.slow
def test_comparison_rows_tests_and_files(comparison: graft.ladder.compare.Comparison) -> None:
    document = json.loads((comparison.out / "compare.json").read_text())
    names = [(row["backbone"], row["strategy"]) for row in document["rows"]]
    assert names == [
        ("efficientnet_lite0.in1k", "linear"),
        ("efficientnet_lite0.in1k", "head"),
        ("efficientnet_lite0.in1k", "imagenet (no training)"),
    ]
    for row in document["rows"]:
        assert len(row["accuracy_interval"]) == 2 and row["total_params"] > 0
        assert row["images_per_second"] > 0
    assert document["rows"][0]["trainable_params"] == 1281  # a binary logistic head: 1280 + 1
    assert len(document["mcnemar"]) == 2 and all(
        0 <= m["p_value"] <= 1 for m in document["mcnemar"]
    )
    _assert_self_contained((comparison.out / "compare.html").read_text())


@pytest.mark.slow
def test_comparison_resumes_without_redoing_finished_runs(
    comparison: graft.ladder.compare.Comparison,
) -> None:
    states: list[tuple[str, str]] = []
    compare(
        None,
        out=comparison.out,
        strategies=["linear", "head"],
        train_options=QUICK,
        on_run=lambda b, s, state: states.append((s, state)),
    )
    assert states == [("linear", "skipped"), ("head", "skipped")]


@pytest.mark.slow
def test_comparison_notes_a_missing_imagenet_map_and_checks_strategies(
    data: Path, tmp_path: Path
) -> None:
    result = compare(data, out=tmp_path / "c", strategies=["linear"], train_options=QUICK)
    assert len(result.rows) == 1 and "--imagenet-map" in result.notes[0]
    with pytest.raises(ConfigError, match="each must be one of"):
        compare(data, out=tmp_path / "d", strategies=["magic"])
    with pytest.raises(ConfigError, match="--imagenet-map 'cats=x'"):
        parse_imagenet_map("cats=x")


def test_comparison_needs_an_evaluation_split(tmp_path: Path) -> None:
    only_train = write_class_folders(tmp_path / "flat", 6)
    with pytest.raises(ConfigError, match="needs a validation or test split"):
        compare(
            only_train, out=tmp_path / "c", strategies=["linear"], data_options=DataOptions(val=0.0)
        )


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)"
)
@pytest.mark.slow
def test_reports_render_in_a_real_browser(
    linear_run: Path, comparison: graft.ladder.compare.Comparison, tmp_path: Path
) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    report = Path(graft.evaluate(linear_run, report=True)["report"])
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        runs = len(json.loads((comparison.out / "compare.json").read_text())["rows"])
        classes = json.loads((linear_run / "config.json").read_text())["classes"]
        for path, expected in (
            (report, {"per-class": len(classes)}),
            (comparison.out / "compare.html", {"runs": runs}),
        ):
            page.goto(path.as_uri())
            widths = page.evaluate(
                "Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)"
            )
            assert widths and all(width > 0 for width in widths)
            for table_id, rows in expected.items():
                count = page.evaluate(f"document.querySelectorAll('#{table_id} tbody tr').length")
                assert count == rows, (path.name, table_id, count, rows)
            shot = tmp_path / f"{path.stem}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        page.goto(report.as_uri())
        names = page.evaluate(
            "Array.from(document.querySelectorAll('#metrics tbody tr td:first-child'))"
            ".map(td => td.textContent)"
        )
        assert names[:4] == ["accuracy", "macro-F1", "weighted-F1", "macro precision / recall"]
        browser.close()
