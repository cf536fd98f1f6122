"""The query page end to end in the system Chromium: upload a face, pick a pose, see the hits."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from fakes import POSES, FakeGenerator, face, tiny_gallery
from PIL import Image

from facedata.faceset import FaceSet
from index.faiss_index import build_index
from retrieval.query import open_gallery
from retrieval.serve.app import create_app
from retrieval.serve.engine import QueryEngine

CHROMIUM = Path("/usr/bin/chromium")  # Playwright's own browser download cannot work here
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    """The app on a marker gallery, served by uvicorn on 127.0.0.1 in a thread for the module's tests."""
    root = tmp_path_factory.mktemp("browser")
    tiny_gallery().write(root / "gallery")
    index = build_index(FakeGenerator(), FaceSet.open(root / "gallery"), root / "index", batch_size=16, progress=False)
    app = create_app(QueryEngine(FakeGenerator(), index, open_gallery(index)))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.mark.slow
def test_the_page_finds_an_uploaded_face_in_the_chosen_pose_and_marks_gallery_queries(server_url, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium): the browser test drives the system browser")
    from playwright.sync_api import sync_playwright

    photo = tmp_path / "face.png"
    Image.fromarray(face(1, POSES.index("-30"))).save(photo)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            page.goto(server_url)
            page.wait_for_function("document.getElementById('target').options.length === 7")
            assert page.locator("#factor").inner_text() == "pose"

            page.set_input_files("#file", str(photo))
            page.select_option("#target", "-45")
            page.wait_for_function("document.getElementById('results').dataset.target === '-45'")
            hits = page.locator("#hits .hit")
            assert hits.count() == 5
            first = hits.nth(0)
            assert first.locator(".identity").inner_text() == "id01" and "pose -45" in first.inner_text()
            assert "unknown" in (first.get_attribute("class") or "")  # an upload's identity is not known
            distances = [float(d) for d in page.locator("#hits .distance").all_inner_texts()]
            assert distances == sorted(distances)
            assert page.locator("#generated-caption").inner_text() == "generated: pose -45"

            shot = Image.open(io.BytesIO(page.screenshot(full_page=True)))
            assert shot.size[0] == 1000 and np.asarray(shot.convert("L")).std() > 10  # drawn, not blank
            (tmp_path / "page.png").write_bytes(page.screenshot())

            dropped = base64.b64encode(photo.read_bytes()).decode()
            transfer = page.evaluate_handle(
                """(b64) => { const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                   const dt = new DataTransfer(); dt.items.add(new File([bytes], 'dropped.png', {type: 'image/png'}));
                   return dt; }""", dropped)
            page.select_option("#target", "+15")
            page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
            page.wait_for_function("document.getElementById('results').dataset.target === '+15' && "
                                   "document.getElementById('drop-text').textContent === 'dropped.png'")
            page.wait_for_function("document.getElementById('status').textContent.startsWith('Done')")
            assert page.locator("#query-caption").inner_text() == "query: dropped.png"
            assert "pose +15" in page.locator("#hits .hit").nth(0).inner_text()

            page.click("#random")  # a gallery face: its identity is known, so every hit is marked
            page.wait_for_function("document.getElementById('query-caption').textContent.startsWith('query: id')")
            page.wait_for_function("document.getElementById('status').textContent.startsWith('Done')")
            marked = page.locator("#hits .hit.correct, #hits .hit.wrong")
            assert marked.count() == 5 and page.locator("#hits .hit.correct").count() >= 1
        finally:
            browser.close()
