"""``graft audit``: each finding on planted synthetic cases, the fixes file, ``--dedupe near``,
and the report in a real browser."""

from __future__ import annotations

import csv
import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import graft
from graft.cli import app
from graft.data.fixes import read_fixes
from graft.data.prepare import DataOptions
from graft.errors import ConfigError
from graft.training import LinearOptions, train_linear
from synthetic import COLORS, scene_image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _write(root: Path) -> Path:
    """Scenes in train/val, with one planted case of each finding."""
    for split, count, start in (("train", 20, 0), ("val", 8, 100)):
        for label in ("red", "blue"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(start, start + count):
                seed = zlib.crc32(f"{label}{i}".encode())
                scene_image(seed, COLORS[label]).save(folder / f"{label}_{i}.png")
    # a red scene filed under blue
    scene_image(zlib.crc32(b"flip"), COLORS["red"]).save(root / "train/blue/flipped.png")
    # a cropped, resized, re-encoded copy of a training image in validation
    with Image.open(root / "train/red/red_3.png") as original:
        copy = original.crop((4, 3, 91, 92)).resize((120, 122))
    copy.save(root / "val/red/copy_of_red_3.jpg", quality=80)
    # a PNG cut short: its header reads, its pixels do not (every finding's rows must still
    # point at the right images once it is left out)
    scene_image(7, COLORS["red"]).save(root / "train/red/000_truncated.png")
    whole = (root / "train/red/000_truncated.png").read_bytes()
    (root / "train/red/000_truncated.png").write_bytes(whole[: len(whole) // 2])
    # a checkerboard: like nothing else
    board = (np.indices((96, 96)).sum(0) // 12 % 2 * 255).astype(np.uint8)
    Image.fromarray(board).convert("RGB").save(root / "train/red/checkerboard.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("audit") / "data")


@pytest.fixture(scope="module")
def result(data: Path) -> graft.AuditResult:
    return graft.audit(data, out=data.parent / "audit", engine="torch", report=True)


def _name(result: graft.AuditResult, row: int) -> str:
    return result.samples[row].path.name


def test_the_planted_copy_is_the_closest_pair_across_splits(
    result: graft.AuditResult,
) -> None:
    across = [pair for pair in result.duplicates if pair.across]
    assert across, "the copy in validation was not found"
    best = across[0]
    assert (_name(result, best.first), _name(result, best.second)) == (
        "red_3.png",
        "copy_of_red_3.jpg",
    )
    assert best.cosine > 0.9 and not best.exact
    assert result.samples[best.second].split == "val"


def test_the_flipped_label_is_among_the_top_suspects(result: graft.AuditResult) -> None:
    top = [_name(result, row) for row in np.argsort(-result.suspect)[:3]]
    assert "flipped.png" in top
    issue = next(i for i in result.label_issues if _name(result, i.row) == "flipped.png")
    assert (issue.given, issue.suggested) == ("blue", "red")


def test_the_checkerboard_is_the_first_outlier(result: graft.AuditResult) -> None:
    assert result.outliers and _name(result, result.outliers[0].row) == "checkerboard.png"
    assert all(_name(result, o.row) != "red_3.png" for o in result.outliers)
    assert result.overlap[0]["classes"] in (["blue", "red"], ["red", "blue"])


def test_audit_json_and_fixes_csv_list_the_findings(result: graft.AuditResult) -> None:
    assert result.out is not None
    assert [Path(path).name for path, _ in result.skipped] == ["000_truncated.png"]
    assert all(sample.path.name != "000_truncated.png" for sample in result.samples)
    written = json.loads((result.out / "audit.json").read_text())
    assert written["kind"] == "graft-audit"
    assert written["summary"] == result.summary()
    first = written["near_duplicates"][0]
    assert Path(first["second"]["path"]).name == "copy_of_red_3.jpg"
    with open(result.out / "fixes.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_name = {Path(row["path"]).name: row for row in rows}
    assert by_name["copy_of_red_3.jpg"]["suggested"] == "drop"
    assert by_name["flipped.png"]["suggested"] == "relabel"
    assert by_name["flipped.png"]["label"] == "red"
    assert all(row["action"] == "keep" for row in rows)  # nothing changes until the user says


def test_audit_refuses_a_folder_it_did_not_write(data: Path, tmp_path: Path) -> None:
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("precious")
    with pytest.raises(ConfigError, match="not a graft audit"):
        graft.audit(data, out=thesis, engine="torch")
    assert (thesis / "chapter1.tex").read_text() == "precious"
    assert sorted(p.name for p in thesis.iterdir()) == ["chapter1.tex"]


def test_fixes_drop_and_relabel_without_touching_files(data: Path, tmp_path: Path) -> None:
    fixes = tmp_path / "fixes.csv"
    fixes.write_text(
        "path,action,label\n"
        f"{data / 'train/blue/flipped.png'},relabel,red\n"
        f"{data / 'val/red/copy_of_red_3.jpg'},drop,\n"
        f"{data / 'train/red/red_0.png'},keep,\n"
        f"{tmp_path / 'gone.png'},drop,\n"
    )
    before = {p: p.stat().st_mtime_ns for p in data.rglob("*") if p.is_file()}
    run = train_linear(
        data,
        out=tmp_path / "run",
        data_options=DataOptions(fixes=fixes),
        options=LinearOptions(engine="torch"),
    )
    assert before == {p: p.stat().st_mtime_ns for p in data.rglob("*") if p.is_file()}
    with open(run.run_dir / "split.csv", newline="") as handle:
        manifest = {Path(row["path"]).name: row for row in csv.DictReader(handle)}
    assert manifest["flipped.png"]["label"] == "red"
    assert "copy_of_red_3.jpg" not in manifest
    recorded = json.loads((run.run_dir / "config.json").read_text())["data"]["fixes"]
    assert recorded == {"file": str(fixes), "dropped": 1, "relabelled": 1, "unmatched": 1}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("image,label\na.png,cat\n", "first line must be the header"),
        ("path,action,label\na.png,delete,\n", "line 2: action 'delete'"),
        ("path,action,label\na.png,relabel,\n", "line 2: relabel needs the new class"),
    ],
)
def test_a_bad_fixes_file_is_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "fixes.csv"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as caught:
        read_fixes(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.slow
def test_train_warns_of_near_copies_and_dedupe_near_drops_the_later_one(
    data: Path, tmp_path: Path
) -> None:
    plain = train_linear(data, out=tmp_path / "plain", options=LinearOptions(engine="torch"))
    found = plain.report.near_duplicates
    assert found["pairs"] >= 1 and found["dropped"] == 0
    assert Path(found["listed"][0]["second"]).name == "copy_of_red_3.jpg"
    assert any("near-copies" in warning for warning in plain.report.warnings)
    deduped = train_linear(
        data,
        out=tmp_path / "deduped",
        data_options=DataOptions(dedupe="near"),
        options=LinearOptions(engine="torch"),
    )
    config = json.loads((deduped.run_dir / "config.json").read_text())["data"]
    assert config["near_duplicates_across_splits"]["dropped"] == found["pairs"]
    assert "copy_of_red_3.jpg" in {Path(p).name for p in config["dropped"]}
    names = {s.path.name for s in deduped.report.images.samples}
    assert "copy_of_red_3.jpg" not in names and "red_3.png" in names
    assert deduped.metrics["val"]["n"] == plain.metrics["val"]["n"] - found["pairs"]


def test_cli_audit_prints_the_findings_and_where_it_saved(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli-audit"
    result = CliRunner().invoke(
        app, ["audit", str(data), "--out", str(out), "--engine", "torch"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "copy_of_red_3.jpg" in result.output
    assert "likely label errors" in result.output and "flipped.png" in result.output
    assert "--fixes" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["audit.json", "fixes.csv"]


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)"
)
def test_audit_html_shows_every_image_in_a_real_browser(
    result: graft.AuditResult, tmp_path: Path
) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    assert result.out is not None
    report = result.out / "audit.html"
    text = report.read_text()
    assert "<script" not in text.lower() and "http" not in text
    expected = 2 * len(result.duplicates) + len(result.label_issues) + len(result.outliers)
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(report.as_uri())
        widths = page.evaluate(
            "Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)"
        )
        assert len(widths) == expected
        assert all(width > 0 for width in widths)
        alts = page.evaluate("Array.from(document.images).map(i => i.alt)")
        assert {"copy_of_red_3.jpg", "flipped.png", "checkerboard.png"} <= set(alts)
        page.screenshot(path=str(tmp_path / "audit.png"), full_page=True)
        browser.close()


def test_without_features_the_check_uses_thumbnails_alone(data: Path) -> None:
    """The neural strategies run the check before any feature exists."""
    from graft.auditing.leakage import check_near_duplicates
    from graft.data.prepare import prepare

    report = prepare(data)
    keep = check_near_duplicates(report, dedupe="near")
    assert report.near_duplicates["method"] == "thumbnails"
    assert [Path(pair["second"]).name for pair in report.near_duplicates["listed"]] == [
        "copy_of_red_3.jpg"
    ]
    assert int((~keep).sum()) == 1
    assert "copy_of_red_3.jpg" not in {s.path.name for s in report.images.samples}
    assert len(report.hashes) == len(report.images.samples)


def test_a_class_of_one_image_is_audited_and_suspect() -> None:
    from graft.auditing.findings import out_of_fold_probabilities

    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(3, 1, (10, 4)), rng.normal(-3, 1, (10, 4))])
    features = np.vstack([features, rng.normal(3, 1, (1, 4))])
    labels = ["a"] * 10 + ["b"] * 10 + ["c"]
    proba = out_of_fold_probabilities(features, labels, ["a", "b", "c"])
    assert proba.shape == (21, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert proba[-1].argmax() == 0 and proba[-1, 2] == 0.0  # no probe saw class c
    assert (proba[:10].argmax(axis=1) == 0).all() and (proba[10:20].argmax(axis=1) == 1).all()


def _unsplit(root: Path) -> Path:
    """Class folders only (graft makes the split), with a mislabelled image and a copy."""
    for label in ("red", "blue"):
        (root / label).mkdir(parents=True)
        for i in range(15):
            scene_image(zlib.crc32(f"u{label}{i}".encode()), COLORS[label]).save(
                root / label / f"{label}_{i}.png"
            )
    scene_image(zlib.crc32(b"uflip"), COLORS["red"]).save(root / "blue/flipped.png")
    with Image.open(root / "red/red_3.png") as original:
        original.crop((3, 4, 92, 91)).resize((110, 104)).save(root / "red/copy.jpg", quality=75)
    return root


@pytest.mark.slow
def test_the_audits_own_fixes_file_applies_to_relative_unsplit_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _unsplit(Path("data"))
    audit = graft.audit(Path("data"), out=Path("audit"), engine="torch")
    assert audit.fixes_file == Path("audit/fixes.csv")
    with open(audit.fixes_file, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert all(Path(row["path"]).is_absolute() for row in rows)
    decided = {}
    for row in rows:  # what a user does: accept the suggestions
        if row["suggested"] in ("drop", "relabel"):
            row["action"] = row["suggested"]
            decided[Path(row["path"]).name] = (row["action"], row["label"])
    assert {"drop", "relabel"} <= {action for action, _ in decided.values()}
    with open(audit.fixes_file, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plain = train_linear(Path("data"), out=Path("plain"), options=LinearOptions(engine="torch"))
    fixed = train_linear(
        Path("data"),
        out=Path("fixed"),
        data_options=DataOptions(fixes=audit.fixes_file),
        options=LinearOptions(engine="torch"),
    )
    summary = fixed.report.fixes
    assert summary["unmatched"] == 0
    assert summary["relabelled"] + summary["dropped"] == len(decided)

    def manifest(run: Path) -> dict[str, dict[str, str]]:
        with open(run / "split.csv", newline="") as handle:
            return {Path(row["path"]).name: row for row in csv.DictReader(handle)}

    before, after = manifest(plain.run_dir), manifest(fixed.run_dir)
    for name, (action, label) in decided.items():
        assert name not in after if action == "drop" else after[name]["label"] == label
    # every image keeps the split it had: the fixes do not reshuffle the seeded split
    assert all(before[name]["split"] == row["split"] for name, row in after.items())
    # a second audit keeps the edited decisions and writes its suggestions beside them
    again = graft.audit(Path("data"), out=Path("audit"), engine="torch")
    assert again.fixes_file == Path("audit/fixes.new.csv")
    with open("audit/fixes.csv", newline="") as handle:
        assert [row["action"] for row in csv.DictReader(handle)] == [row["action"] for row in rows]


def test_fixes_for_other_data_or_an_unknown_class_are_refused(data: Path, tmp_path: Path) -> None:
    from graft.data.dataset import read_labelled
    from graft.data.fixes import apply_fixes

    images = read_labelled(data)
    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_text(f"path,action,label\n{tmp_path / 'x.png'},drop,\n")
    with pytest.raises(ConfigError, match="names an image of the data"):
        apply_fixes(images, read_fixes(elsewhere))
    typo = tmp_path / "typo.csv"
    typo.write_text(f"path,action,label\n{data / 'train/blue/flipped.png'},relabel,Red\n")
    with pytest.raises(ConfigError, match=r"line 2: 'Red' is not a class of the data; use one of"):
        apply_fixes(images, read_fixes(typo))
    twice = tmp_path / "twice.csv"
    image = data / "train/blue/flipped.png"
    twice.write_text(f"path,action,label\n{image},drop,\n{image},relabel,red\n")
    with pytest.raises(ConfigError, match=r"line 3: .* already has another decision"):
        read_fixes(twice)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("path,action,label\nd\xe9j\xe0.png,drop,\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        read_fixes(latin)


@pytest.mark.slow
def test_a_resumed_neural_run_keeps_its_record_of_dropped_copies(
    data: Path, tmp_path: Path
) -> None:
    from graft.faults import InjectedCrash, reset_counts
    from graft.training import NeuralOptions, train_neural

    # no safeguard: the fault fires when an epoch saves a new best, and the probe's score can
    # leave the first epoch without one
    options = NeuralOptions(
        strategy="head",
        epochs=2,
        augment="none",
        engine="torch",
        workers=0,
        batch_size=16,
        safeguard=False,
    )
    # training refuses images that fail to decode mid-epoch: leave the truncated one out
    data = Path(shutil.copytree(data, tmp_path / "data", ignore=shutil.ignore_patterns("000_*")))
    run = tmp_path / "run"
    reset_counts()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAFT_FAULT", "neural.between-checkpoints#1")
        with pytest.raises(InjectedCrash):
            train_neural(data, out=run, data_options=DataOptions(dedupe="near"), options=options)
    first = json.loads((run / "config.json").read_text())["data"]
    assert first["near_duplicates_across_splits"]["dropped"] >= 1
    assert "copy_of_red_3.jpg" in {Path(path).name for path in first["dropped"]}
    train_neural(None, resume=run)
    final = json.loads((run / "config.json").read_text())
    assert final["status"] == "complete"
    for key in ("near_duplicates_across_splits", "dropped"):
        assert final["data"][key] == first[key]


@pytest.mark.slow
def test_cli_train_prints_the_near_copy_warning_found_after_the_summary(
    data: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app,
        ["train", str(data), "--out", str(tmp_path / "run"), "--engine", "torch"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # Rich wraps long lines
    assert text.count("look like near-copies") == 1
