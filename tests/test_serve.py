"""The web service: every route, every error, micro-batching, the page in a real browser."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from graft.serve import MicroBatcher, QueueFullError, ServeOptions, create_app
from graft.serve.decoding import DecodeLanes
from graft.training import LinearOptions, train_linear
from loopback import served
from synthetic import tinted_image, write_class_folders

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve")
    data = root / "data"
    write_class_folders(data / "train", 10)
    write_class_folders(data / "validation", 4, start=100)
    train_linear(data, out=root / "run", options=LinearOptions(engine="torch"))
    return root / "run"


def _png(color: tuple[int, int, int] = (200, 40, 40), seed: int = 5) -> bytes:
    buffer = io.BytesIO()
    tinted_image(color, seed=seed).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def client(run: Path) -> Iterator[TestClient]:
    with TestClient(create_app(run, ServeOptions(backend="torch"))) as test_client:
        yield test_client


def test_health_info_and_page(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["labels"] == ["blue", "red"] and info["strategy"] == "linear"
    assert info["metrics"]["val"]["accuracy"] > 0.5 and info["api_key_required"] is False
    page = client.get("/")
    assert page.status_code == 200 and "Drop images here" in page.text


def test_predict_one_and_many(client: TestClient) -> None:
    one = client.post("/predict", files={"file": ("red.png", _png(), "image/png")})
    assert one.status_code == 200
    (prediction,) = one.json()["predictions"]
    assert prediction["filename"] == "red.png" and prediction["label"] == "red"
    assert (
        len(prediction["top_k"]) == 2
        and abs(sum(t["probability"] for t in prediction["top_k"]) - 1) < 1e-4
    )
    files = [
        ("files", (f"{i}.png", _png(color, seed=i), "image/png"))
        for i, color in enumerate([(200, 40, 40), (40, 40, 200)] * 3)
    ]
    many = client.post("/predict?top_k=1", files=files)
    labels = [p["label"] for p in many.json()["predictions"]]
    assert labels == ["red", "blue"] * 3 and all(
        len(p["top_k"]) == 1 for p in many.json()["predictions"]
    )


def _big_png(megabytes: float) -> bytes:
    """A PNG of random pixels (incompressible), about ``megabytes`` long."""
    side = int((megabytes * 1024 * 1024 / 3) ** 0.5)
    pixels = np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT


def _opened_for_writing(events: list[tuple[object, ...]]) -> list[object]:
    written = []
    for path, mode, flags in events:
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        if writes:
            written.append(path)
    return written


def test_uploads_are_never_written_to_disk(client: TestClient) -> None:
    """Every file opened for writing while a 3 MB upload is handled is recorded by an audit
    hook (Starlette's own form parser would spill anything over 1 MB to a temporary file)."""
    events: list[tuple[object, ...]] = []
    recording = threading.Event()

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event == "open" and recording.is_set():
            events.append(args)

    sys.addaudithook(hook)  # process-wide and permanent: it records only while the flag is set
    upload = _big_png(3)
    assert len(upload) > 2 * 1024 * 1024
    recording.set()
    try:
        response = client.post("/predict", files={"file": ("big.png", upload, "image/png")})
        Path(__file__).read_bytes()  # an open the hook must see: it is recording
    finally:
        recording.clear()
    assert response.status_code == 200, response.text
    assert any(str(args[0]) == __file__ for args in events), "the hook is not recording"
    assert _opened_for_writing(events) == []


def test_too_large_uploads_get_413(run: Path) -> None:
    with TestClient(create_app(run, ServeOptions(backend="torch", max_upload_bytes=2000))) as small:
        response = small.post(
            "/predict", files={"file": ("big.png", _png() + b"\0" * 5000, "image/png")}
        )
        assert response.status_code == 413 and "upload limit of 2,000" in response.json()["detail"]
    with TestClient(create_app(run, ServeOptions(backend="torch", max_files=2))) as few:
        files = [("files", (f"{i}.png", _png(), "image/png")) for i in range(3)]
        assert few.post("/predict", files=files).status_code == 413


def test_unsupported_and_corrupt_images(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = client.post("/predict", files={"file": ("notes.png", b"hello", "image/png")})
    assert text.status_code == 415 and "notes.png: not a readable image" in text.json()["detail"]
    cut = client.post("/predict", files={"file": ("cut.png", _png()[:120], "image/png")})
    assert cut.status_code == 422 and "cut.png: truncated or corrupt" in cut.json()["detail"]
    assert (
        client.post(
            "/predict", content=b"{}", headers={"content-type": "application/json"}
        ).status_code
        == 415
    )
    assert client.post("/predict", data={"field": "no file"}).status_code == 415
    monkeypatch.setenv("GRAFT_MAX_PIXELS", "100")
    bomb = client.post("/predict", files={"file": ("huge.png", _png(), "image/png")})
    assert bomb.status_code == 422 and "exceeds the limit of 100" in bomb.json()["detail"]


def test_api_key(run: Path) -> None:
    with TestClient(create_app(run, ServeOptions(backend="torch", api_key="s3cret"))) as locked:
        files = {"file": ("red.png", _png(), "image/png")}
        assert locked.post("/predict", files=files).status_code == 401
        assert (
            locked.post("/predict", files=files, headers={"X-API-Key": "wrong"}).status_code == 401
        )
        assert (
            locked.post("/predict", files=files, headers={"X-API-Key": "s3cret"}).status_code == 200
        )
        assert locked.get("/health").status_code == 200
        assert locked.get("/info").status_code == 401  # the run's labels and metrics are private
        info = locked.get("/info", headers={"X-API-Key": "s3cret"})
        assert info.json()["api_key_required"] is True
        # Any header value at all, non-ASCII bytes included, is a plain 401, never a 500.
        for value in ("s3crét".encode(), b"\xff\xfe", b"s3cret "):
            odd = locked.post("/predict", files=files, headers=[(b"x-api-key", value)])
            assert odd.status_code == 401, value
    with TestClient(create_app(run, ServeOptions(backend="torch", api_key="clé"))) as accented:
        good = accented.post("/predict", files=files, headers=[(b"x-api-key", "clé".encode())])
        assert good.status_code == 200


def test_more_images_than_the_queue_holds_get_413_and_slow_model_504(run: Path) -> None:
    with TestClient(create_app(run, ServeOptions(backend="torch", max_queue=1))) as tiny:
        files = [("files", (f"{i}.png", _png(), "image/png")) for i in range(2)]
        never = tiny.post("/predict", files=files)
        assert never.status_code == 413 and "send fewer images" in never.json()["detail"]
    app = create_app(run, ServeOptions(backend="torch", timeout_s=0.05))
    with TestClient(app) as slow:
        app.state.batcher.run = lambda images: time.sleep(1.0) or np.zeros((len(images), 2))
        late = slow.post("/predict", files={"file": ("red.png", _png(), "image/png")})
        assert late.status_code == 504
        # The timed-out images stop counting once the worker takes them off the queue.
        for _ in range(100):
            if app.state.batcher.waiting == 0:
                break
            time.sleep(0.05)
        assert app.state.batcher.waiting == 0


def test_concurrent_load_reaches_503_then_recovers(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real server on loopback, a model held busy: the queue fills, the rest get 503 before
    any work is spent decoding their images."""
    app = create_app(run, ServeOptions(backend="torch", max_queue=2, timeout_s=20))
    gate, busy = threading.Event(), threading.Event()
    real = app.state.batcher.run

    def held(images: Any) -> Any:
        busy.set()
        return gate.wait(20) and real(images)

    app.state.batcher.run = held
    decoded: list[str] = []
    real_work = DecodeLanes._work

    def counted(self: DecodeLanes[Any], data: bytes, name: str) -> Any:
        decoded.append(name)
        return real_work(self, data, name)

    monkeypatch.setattr(DecodeLanes, "_work", counted)
    with served(app) as url:
        statuses: list[int] = []

        def send() -> None:
            files = {"file": ("red.png", _png(), "image/png")}
            statuses.append(httpx.post(url + "/predict", files=files, timeout=30).status_code)

        def until(reading: Callable[[], object], value: object = True) -> None:
            for _ in range(400):
                if reading() == value:
                    return
                time.sleep(0.05)
            raise AssertionError("the server never reached the expected state")

        # One in the model, two queued, then the queue is full: each sender starts only when
        # the one before it has reached its place, so no two requests share a batch.
        senders = [threading.Thread(target=send) for _ in range(6)]
        senders[0].start()
        until(busy.is_set)
        for queued, sender in enumerate(senders[1:3], start=1):
            sender.start()
            until(lambda: app.state.batcher.waiting, queued)
        for refused, sender in enumerate(senders[3:], start=1):
            sender.start()
            until(lambda: len(statuses), refused)
        assert httpx.get(url + "/health", timeout=5).status_code == 200  # still answering
        gate.set()
        for sender in senders:
            sender.join(timeout=30)
        assert sorted(statuses).count(200) == 3 and sorted(statuses).count(503) == 3, statuses
        assert len(decoded) == 3  # refused requests were never decoded
        files = {"file": ("red.png", _png(), "image/png")}
        assert httpx.post(url + "/predict", files=files, timeout=30).status_code == 200


def test_chunked_uploads_over_the_limit_get_413(run: Path) -> None:
    """No Content-Length (chunked transfer): the limit is enforced while reading."""
    app = create_app(run, ServeOptions(backend="torch", max_upload_bytes=100_000))
    boundary = "graftboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    sent = []

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(100):  # 6.4 MB if read to the end
            sent.append(1)
            yield b"\0" * 65536

    with served(app) as url:
        try:
            response = httpx.post(
                url + "/predict",
                content=body(),
                headers={"content-type": f"multipart/form-data; boundary={boundary}"},
                timeout=30,
            )
        except httpx.HTTPError:  # the server answered and closed before the body ended
            assert len(sent) < 100, "the whole oversized body was read"
        else:
            assert response.status_code == 413 and "upload limit" in response.json()["detail"]
        assert httpx.get(url + "/health", timeout=5).status_code == 200


def test_many_empty_parts_are_refused_early_and_health_stays_up(run: Path) -> None:
    """20,000 empty parts (2.9 MB): refused after the first few dozen parts."""
    app = create_app(run, ServeOptions(backend="torch"))
    boundary = "b"
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="x"\r\n\r\n\r\n'
    body = (part * 20_000 + f"--{boundary}--\r\n").encode()
    assert len(body) > 1_000_000
    with served(app) as url:
        response = httpx.post(
            url + "/predict",
            content=body,
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
            timeout=30,
        )
        assert response.status_code == 413 and "parts in one request" in response.json()["detail"]
        assert httpx.get(url + "/health", timeout=5).status_code == 200


def test_a_slow_sender_gets_408_and_others_areserved(run: Path) -> None:
    app = create_app(run, ServeOptions(backend="torch", body_timeout_s=0.5))
    with served(app) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as slow:
            slow.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
            )
            files = {"file": ("red.png", _png(), "image/png")}
            assert httpx.post(url + "/predict", files=files, timeout=30).status_code == 200
            answer = slow.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:100]


def test_eps_and_other_formats_are_never_parsed(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An EPS named x.png is refused by its magic bytes; Pillow's EPS plugin never runs."""
    from PIL import EpsImagePlugin

    def parsed(*args: object) -> None:
        raise AssertionError("the EPS plugin parsed an upload")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", parsed)
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), (255, 0, 0)).save(buffer, format="EPS")
    response = client.post("/predict", files={"file": ("x.png", buffer.getvalue(), "image/png")})
    assert response.status_code == 415
    assert "x.png: unsupported format EPS" in response.json()["detail"]


def test_a_request_over_the_pixel_budget_is_refused_before_decoding(run: Path) -> None:
    app = create_app(run, ServeOptions(backend="torch", max_request_pixels=1_000_000))
    flat = io.BytesIO()
    Image.new("RGB", (1200, 1000), (9, 9, 9)).save(flat, format="PNG")
    with TestClient(app) as small:
        one = small.post("/predict", files={"file": ("flat.png", flat.getvalue(), "image/png")})
        assert one.status_code == 413 and "1,200,000 pixels" in one.json()["detail"]


def test_concurrent_requests_share_batches() -> None:
    calls: list[int] = []

    def model(images: list[object]) -> np.ndarray:
        calls.append(len(images))
        time.sleep(0.02)
        return np.ones((len(images), 2)) / 2

    async def main() -> list[np.ndarray]:
        batcher = MicroBatcher(model, max_batch=8, max_wait_s=0.01, max_queue=64)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit([i]) for i in range(16)))
        with pytest.raises(QueueFullError):
            await batcher.submit(list(range(65)))
        await batcher.stop()
        return list(results)

    results = asyncio.run(main())
    assert len(results) == 16 and all(r.shape == (1, 2) for r in results)
    assert sum(calls) == 16 and len(calls) < 16  # requests were batched together


@pytest.fixture
def live_server(shared_data: Path, tmp_path: Path) -> Iterator[str]:
    """A cats/dogs linear probe on 40 real photos, served by uvicorn on loopback."""
    train = shared_data / "cats_and_dogs_filtered" / "train"
    rows = ["path,label,split"]
    for label in ("cats", "dogs"):
        files = sorted((train / label).iterdir())
        rows += [f"{f},{label},train" for f in files[:16]] + [
            f"{f},{label},val" for f in files[16:20]
        ]
    table = tmp_path / "few.csv"
    table.write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    train_linear(table, out=run)
    with served(create_app(run)) as url:
        yield url


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)"
)
@pytest.mark.slow
def test_the_page_classifies_an_uploaded_cat_in_a_real_browser(
    live_server: str, shared_data: Path, tmp_path: Path
) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    cat = shared_data / "cats_and_dogs_filtered" / "validation" / "cats" / "cat.2000.jpg"
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page()
        page.goto(live_server + "/")
        page.set_input_files("#files", str(cat))
        page.wait_for_selector(".card[data-label]", timeout=30_000)
        label = page.text_content(".card .label") or ""
        assert label.startswith("cats ") and label.endswith("%")
        assert page.locator(".card .bar").count() == 2
        assert page.evaluate("document.querySelector('.card img').naturalWidth") > 0
        page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
        browser.close()
    assert (tmp_path / "serve.png").stat().st_size > 5_000


@pytest.mark.slow
def test_bounded_load_on_loopback(run: Path) -> None:
    """A short version of bench/serve_load.py: zero errors under concurrency, then it stops."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from serve_load import load_test

    report = load_test(run, requests=120, concurrency=8, backend="torch")
    assert report["errors"] == 0 and report["requests"] == 120
    assert report["p50_ms"] > 0 and report["p99_ms"] >= report["p50_ms"]


@pytest.mark.slow
def test_a_pixel_flood_does_not_multiply_memory(run: Path) -> None:
    """16 solid-colour 9000 x 9000 PNGs (81 megapixels, 243 MB decoded, each under the pixel
    limit) sent at once as 16 requests: before, the server's peak memory rose by 5.4 GB; now
    large images decode one at a time, so it rises by about one image's worth."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from serve_load import flood_png, rss_mb, serve_in_child

    flood = flood_png()
    assert len(flood) < 1_000_000
    with serve_in_child(run, "torch", max_queue=256) as (base, pid):
        before = rss_mb(pid, "VmHWM")

        def send() -> int:
            files = {"file": ("flood.png", flood, "image/png")}
            return httpx.post(base + "/predict", files=files, timeout=120).status_code

        statuses: list[int] = []
        senders = [threading.Thread(target=lambda: statuses.append(send())) for _ in range(16)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(timeout=180)
        grown = rss_mb(pid, "VmHWM") - before
    assert statuses == [200] * 16
    assert grown < 1200, f"peak memory grew by {grown:.0f} MB"


def test_a_header_declaring_a_decompression_bomb_is_refused_not_500(client: TestClient) -> None:
    """A few dozen bytes declaring 20000 x 20000: Pillow's own bomb error becomes a 422."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    response = client.post("/predict", files={"file": ("bomb.png", bomb, "image/png")})
    assert response.status_code == 422 and "bomb.png" in response.json()["detail"]
