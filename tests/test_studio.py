"""``graft studio``: its guards over HTTP, and the whole journey in a real browser."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from graft.datasets import elpv
from graft.studio import create_studio_app
from graft.studio.jobs import JobQueue
from loopback import served

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _solar_cells(folder: Path, per_class: int = 12) -> Path:
    """Real ELPV cells (the embedded demo set) in split folders: ``per_class`` of each class in
    train and as many in validation (hard enough that a run makes mistakes)."""
    counts: dict[str, int] = {}
    for path, label in elpv("binary"):
        seen = counts.get(label, 0)
        if seen < 2 * per_class:
            counts[label] = seen + 1
            split = "train" if seen < per_class else "validation"
            (folder / split / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, folder / split / label / path.name)
    return folder


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _solar_cells(tmp_path_factory.mktemp("studio") / "cells")


def test_paths_outside_the_opened_folders_are_refused(cells: Path, tmp_path: Path) -> None:
    client = TestClient(create_studio_app([cells], workspace=tmp_path / "studio"))
    outside = client.post("/api/open", json={"path": str(tmp_path)})
    assert outside.status_code == 403 and "outside the folders" in outside.json()["detail"]
    assert client.get("/api/image", params={"path": "/etc/passwd"}).status_code == 403
    assert client.get("/api/thumb", params={"path": str(cells / "..")}).status_code == 403
    assert client.get("/api/runs/..%2F..%2Fetc").status_code in (403, 404)
    opened = client.post("/api/open", json={"path": str(cells)}).json()
    assert opened["classes"] == ["defective", "functional"]
    assert opened["layout"] == "split-folders"
    assert opened["counts"] == {
        "train": {"defective": 12, "functional": 12},
        "val": {"defective": 12, "functional": 12},
    }
    image = next((cells / "train" / "defective").iterdir())
    bad = client.post(
        "/api/decide",
        json={"data": str(cells), "path": str(image), "action": "relabel", "label": "cat"},
    )
    assert bad.status_code == 422 and "not a class" in bad.json()["detail"]
    thumb = client.get("/api/thumb", params={"path": str(image)})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert list((tmp_path / "studio" / "thumbnails").rglob("*.jpg"))  # cached


def test_an_api_key_guards_every_api_route(cells: Path, tmp_path: Path) -> None:
    client = TestClient(create_studio_app([cells], workspace=tmp_path / "s", api_key="sesame"))
    assert client.get("/api/runs").status_code == 401
    assert client.get("/api/runs", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/api/runs", headers={"X-API-Key": "sesame"}).json() == []
    assert client.get("/api/runs", params={"key": "sesame"}).status_code == 200
    assert client.get("/health").status_code == 200


def test_the_cli_refuses_another_host_without_a_key(cells: Path) -> None:
    from typer.testing import CliRunner

    from graft.cli import app

    result = CliRunner().invoke(app, ["studio", str(cells), "--host", "0.0.0.0"])
    assert result.exit_code != 0 and "--api-key" in str(result.exception)


def test_jobs_run_one_at_a_time_in_order_and_cancel() -> None:
    jobs = JobQueue()
    order: list[str] = []
    gate = threading.Event()

    def slow(job):  # type: ignore[no-untyped-def]
        order.append("slow")
        gate.wait(10)
        return {}

    first = jobs.submit("a", "slow", slow)
    second = jobs.submit("a", "quick", lambda job: order.append("quick") or {})
    third = jobs.submit("a", "never", lambda job: order.append("never") or {})
    jobs.cancel(third.id)
    time.sleep(0.2)
    assert (first.status, second.status) == ("running", "queued")
    gate.set()
    assert jobs.wait(third.id, timeout=10).status == "cancelled"
    assert order == ["slow", "quick"] and second.status == "done"
    jobs.close()


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)"
)
@pytest.mark.slow
def test_the_whole_journey_in_a_real_browser(cells: Path, tmp_path: Path) -> None:
    """Open the folder, see the counts, train a linear run and a short fine-tune while progress
    arrives, see accuracy and the confusion matrix, open a mistake and relabel it, retrain with
    the decision applied, try an image, export ONNX: no console error, a screenshot per step."""
    playwright = pytest.importorskip("playwright.sync_api")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    app = create_studio_app([cells], workspace=tmp_path / "studio", data=cells)
    errors: list[str] = []
    health_ms: list[float] = []
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    camera = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
    args += camera  # chromium's own test camera, allowed without asking
    with served(app) as url, playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))

        def shot(step: str) -> None:
            page.screenshot(path=str(shots / f"{step}.png"), full_page=True)

        def train(strategy: str, **fields: str) -> None:
            page.click("#tabs [data-tab=train]")
            page.select_option("#strategy", strategy)
            for selector, value in fields.items():
                page.fill(selector, value)
            page.click("#train")
            ended = "#train-status[data-state=done], #train-status[data-state=failed]"
            page.wait_for_selector(ended, timeout=300_000)
            status = page.get_attribute("#train-status", "data-state")
            assert status == "done", page.text_content("#error") or page.text_content(ended)

        # 1. open the folder (the page opens the one the studio was started on) and see counts
        page.goto(url + "/")
        page.wait_for_selector("#counts tr[data-class=defective]", timeout=60_000)
        page.click("#browse button.folder")  # into the opened folder: its split folders
        page.wait_for_selector("#browse button.folder:has-text('train/')")
        cells_text = page.eval_on_selector_all(
            "#counts tr[data-class=defective] td", "cells => cells.map(c => c.textContent)"
        )
        assert cells_text == ["defective", "12", "12"]
        page.wait_for_selector("#grid figure img")
        shot("1-data")
        # 2. a linear run: extraction progress arrives, then accuracy and the confusion matrix
        train("linear")
        assert "img/s" in (page.text_content("#extract-rate") or "")
        shot("2-linear")
        page.click("#tabs [data-tab=results]")
        page.wait_for_selector("#confusion tr td")
        assert "accuracy" in (page.text_content("#metrics") or "")
        assert page.locator("#confusion tr").count() == 3
        page.click("#show-report")
        report = page.frame_locator("#report")
        report.locator("text=Confusion matrix").first.wait_for(timeout=120_000)
        shot("3-results")
        # 3. a short fine-tune: epochs arrive as events while /health stays quick
        page.click("#tabs [data-tab=train]")
        page.select_option("#strategy", "finetune")
        page.fill("#epochs", "2")
        page.fill("#freeze-epochs", "1")
        page.fill("#image-size", "96")
        page.click("#train")
        page.wait_for_selector("#epochs-log li.epoch", timeout=300_000)
        with httpx.Client() as client:
            for _ in range(5):
                start = time.perf_counter()
                assert client.get(url + "/health").status_code == 200
                health_ms.append((time.perf_counter() - start) * 1000)
        page.wait_for_selector("#train-status[data-state=done]", timeout=300_000)
        assert page.locator("#epochs-log li.epoch").count() == 2
        shot("4-finetune")
        page.click("#tabs [data-tab=results]")
        page.wait_for_selector("#ladder tr td")  # two runs on the same images: the ladder
        assert page.locator("#ladder tr").count() == 3
        # 4. open a mistake of the linear run, relabel it, retrain: the decision is applied
        page.click("#tabs [data-tab=results]")
        names = page.eval_on_selector_all("#run option", "options => options.map(o => o.value)")
        linear = next(name for name in names if "-linear-" in name)
        page.select_option("#run", linear)
        page.wait_for_selector("#mistakes figure.mistake")
        page.locator("#mistakes figure.mistake").first.click()
        page.wait_for_selector("#viewer:not([hidden])")
        page.wait_for_function("document.getElementById('viewer-image').naturalWidth > 0")
        assert page.locator("#viewer-probabilities li").count() == 2  # every class's
        shot("5-mistake")
        page.click("#relabel")  # to the other class, which the viewer preselects
        page.wait_for_selector("#decision:has-text('relabelled as')")
        page.click("#close-viewer")
        train("linear")
        page.click("#tabs [data-tab=results]")
        page.wait_for_selector("#applied:has-text('1 relabelled')")
        shot("6-retrained")
        # 5. try an image, 6. export ONNX with its parity figures
        page.click("#tabs [data-tab=try]")
        image = next((cells / "validation" / "functional").iterdir())
        page.set_input_files("#try-file", str(image))
        page.wait_for_selector("#try-result li.prediction")
        assert (page.text_content("#try-result li") or "").startswith(image.name + ": ")
        dropped = """async (path) => {
            const blob = await (await fetch("/api/image?path=" + encodeURIComponent(path))).blob();
            const data = new DataTransfer();
            data.items.add(new File([blob], "dropped.png", { type: blob.type }));
            const drop = new DragEvent("drop", { dataTransfer: data, bubbles: true });
            document.getElementById("drop-zone").dispatchEvent(drop);
        }"""
        page.evaluate(dropped, str(image))  # an image dropped on the zone, as a user drops one
        page.wait_for_selector("#try-result li.prediction:has-text('dropped.png: ')")
        page.click("#webcam")
        page.wait_for_selector("#try-result li.prediction:has-text('camera.jpg: ')")
        shot("7-try")
        page.click("#tabs [data-tab=export]")
        page.click("#export")
        page.wait_for_selector("#export-result[data-state=done]", timeout=300_000)
        exported = page.text_content("#export-result") or ""
        assert "agreement 100.00 %" in exported and "--backend onnx" in exported
        shot("8-export")
        browser.close()
    assert errors == []
    runs = sorted((tmp_path / "studio" / "runs").iterdir())
    assert len(runs) == 3 and all((run / "config.json").is_file() for run in runs)
    retrained = json.loads((runs[-1] / "config.json").read_text())
    assert retrained["data"]["fixes"]["relabelled"] == 1
    assert (runs[-1] / "model.onnx").is_file()
    assert len(list(shots.glob("*.png"))) == 8
    print("health round trips during the fine-tune (ms):", [round(ms, 1) for ms in health_ms])


def _finished(client: TestClient, job: str, timeout: float = 300.0) -> dict:  # type: ignore[type-arg]
    app_jobs: JobQueue = client.app.state.jobs  # type: ignore[attr-defined]
    ended = app_jobs.wait(job, timeout=timeout)
    assert ended.ended, f"job {job} still {ended.status}"
    return ended.summary()


@pytest.mark.slow
def test_a_cancelled_fine_tune_resumes_to_completion(cells: Path, tmp_path: Path) -> None:
    """Cancel as the second epoch begins: the job says so, the run stays resumable, and
    resuming it from the page's route completes it. Three epochs of twelve steps are left
    when the cancel is sent, so a fast machine cannot finish before it arrives."""
    client = TestClient(create_studio_app([cells], workspace=tmp_path / "studio"))
    started = client.post(
        "/api/train",
        json={
            "data": str(cells),
            "strategy": "finetune",
            "options": {
                "epochs": 4,
                "freeze_epochs": 1,
                "image_size": 64,
                "batch_size": 2,
                "workers": 0,
            },
        },
    ).json()
    jobs: JobQueue = client.app.state.jobs  # type: ignore[attr-defined]
    job = jobs.jobs[started["job"]]
    for event in job.stream(timeout=120):
        if event is not None and event["type"] == "epoch_begin" and event["epoch"] == 2:
            client.post(f"/api/jobs/{job.id}/cancel")
            break
    assert _finished(client, job.id)["status"] == "cancelled"
    runs = client.get("/api/runs").json()
    assert [(r["name"], r["status"]) for r in runs] == [(started["run"], "running")]
    resumed = client.post("/api/resume", json={"run": started["run"]}).json()
    outcome = _finished(client, resumed["job"])
    assert outcome["status"] == "done", outcome["error"]
    run = tmp_path / "studio" / "runs" / started["run"]
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert client.get("/api/runs").json()[0]["status"] == "complete"


@pytest.mark.slow
def test_shortlist_and_audit_run_as_jobs(cells: Path, tmp_path: Path) -> None:
    client = TestClient(create_studio_app([cells], workspace=tmp_path / "studio"))
    backbones = "efficientnet_lite0.in1k,squeezenet1_1.in1k,mobilenetv2_100.in1k_features"
    ranked = client.post("/api/rank", json={"data": str(cells), "backbones": backbones}).json()
    result = _finished(client, ranked["job"])
    assert result["status"] == "done", result["error"]
    names = [c["name"] for c in result["result"]["candidates"]]
    assert len(names) >= 3 and result["result"]["recommended"] == names[0]
    audited = client.post("/api/audit", json={"data": str(cells)}).json()
    result = _finished(client, audited["job"])
    assert result["status"] == "done", result["error"]
    assert set(result["result"]["summary"]) >= {"label_issues"}
    page = client.get(result["result"]["report"])
    assert page.status_code == 200 and "<html" in page.text.lower()
