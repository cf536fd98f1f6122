"""The query page end to end in the system Chromium: upload a face, pick a pose, see the hits; the same by
keyboard alone; the error state; an axe-core accessibility check; /docs with no network."""

from __future__ import annotations

import base64
import io
import os
import re
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
from rbg.serve.app import create_app
from rbg.serve.engine import QueryEngine

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")  # Playwright's own browser download cannot work here
# Headless, and no background connections of Chromium's own (this machine's network is closed).
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# axe-core from the npm registry: `make test` installs it here (npm install --prefix .cache/axe axe-core@…).
AXE_JS = Path(os.environ.get("AXE_CORE_JS", Path(__file__).parents[1] / ".cache/axe/node_modules/axe-core/axe.min.js"))
DESKTOP = {"viewport": {"width": 1000, "height": 700}}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True, "has_touch": True}
READY = "document.getElementById('target').options.length === 7"


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


@pytest.fixture(scope="module")
def browser():
    """The system Chromium under Playwright, for the module's tests; the tests skip only where it is absent."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium): the browser test drives the system browser")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        yield chromium
        chromium.close()


class Offline:
    """A page whose requests to anywhere but the server are refused and recorded, with its console errors."""

    def __init__(self, browser, server_url: str, **context):
        self.context = browser.new_context(**context)
        self.elsewhere: list[str] = []
        self.errors: list[str] = []
        self.context.route(re.compile(rf"^(?!{re.escape(server_url)}/)"), self._refuse)
        self.page = self.context.new_page()
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        # Listening from the start turns Chromium's file-chooser interception on before any key is pressed;
        # turned on by expect_file_chooser alone, it can come after the key, and the chooser is missed.
        self.page.on("filechooser", lambda chooser: None)

    def _refuse(self, route):
        self.elsewhere.append(route.request.url)
        route.abort()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.context.close()


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "face.png"
    Image.fromarray(face(1, POSES.index("-30"))).save(path)
    return path


@pytest.fixture
def not_a_photo(tmp_path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("hello, not a picture\n")
    return path


def focused(page) -> str:
    return page.evaluate("document.activeElement ? document.activeElement.id : ''")


def wait_done(page, target: str):
    page.wait_for_function(f"document.getElementById('results').dataset.target === '{target}' && "
                           "document.getElementById('status').textContent.startsWith('Done')")


def test_the_page_finds_an_uploaded_face_in_the_chosen_pose_and_marks_gallery_queries(browser, server_url, photo, tmp_path):
    with Offline(browser, server_url, **DESKTOP) as session:
        page = session.page
        page.goto(server_url)
        page.wait_for_function(READY)
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
        assert session.errors == [] and session.elsewhere == []  # no console error (a favicon 404 is one)


def test_the_page_works_by_keyboard_alone(browser, server_url, photo):
    with Offline(browser, server_url, **DESKTOP) as session:
        page = session.page
        page.goto(server_url)
        page.wait_for_function(READY)

        page.keyboard.press("Tab")  # the first stop is the upload, a labelled button
        assert focused(page) == "choose"
        assert page.get_by_role("button", name="Choose a photo…").evaluate("b => b === document.activeElement")
        with page.expect_file_chooser() as chooser:
            page.keyboard.press("Enter")
        chooser.value.set_files(str(photo))
        wait_done(page, "+30")  # the default target
        assert page.locator("#hits .hit").count() == 5 and page.locator("#preview").is_visible()

        for stop in ("random", "target"):
            page.keyboard.press("Tab")
            assert focused(page) == stop
        page.keyboard.press("Home")  # the first pose, -45
        wait_done(page, "-45")
        for stop in ("k", "search"):
            page.keyboard.press("Tab")
            assert focused(page) == stop
        with page.expect_response(f"{server_url}/query") as answer:
            page.keyboard.press("Enter")  # the Search button
        assert answer.value.status == 200
        wait_done(page, "-45")
        first = page.locator("#hits .hit").nth(0)
        assert first.locator(".identity").inner_text() == "id01" and "pose -45" in first.inner_text()

        for _ in range(4):
            page.keyboard.press("Shift+Tab")
        assert focused(page) == "choose"
        with page.expect_file_chooser():  # Space opens the chooser too
            page.keyboard.press(" ")
        assert session.errors == [] and session.elsewhere == []


def test_an_error_clears_the_old_results_and_the_preview(browser, server_url, photo, not_a_photo):
    with Offline(browser, server_url, **DESKTOP) as session:
        page = session.page
        page.goto(server_url)
        page.wait_for_function(READY)
        page.set_input_files("#file", str(photo))
        wait_done(page, "+30")
        assert page.locator("#results").is_visible() and page.locator("#hits .hit").count() == 5

        page.focus("#choose")
        with page.expect_file_chooser() as chooser:
            page.keyboard.press("Enter")
        chooser.value.set_files(str(not_a_photo))
        page.wait_for_function("document.getElementById('status').className === 'error'")
        assert "upload 'notes.txt': not an image" in page.locator("#status").inner_text()
        assert not page.locator("#results").is_visible() and page.locator("#hits .hit").count() == 0
        assert page.locator("#query-image").get_attribute("src") is None
        preview = page.locator("#preview")
        assert not preview.is_visible() and preview.get_attribute("src") is None  # no broken-image icon
        assert page.locator("#search").is_disabled()
        # The one console error is the browser's own note of the 415 answer.
        assert all("415" in error for error in session.errors) and session.elsewhere == []

        page.set_input_files("#file", str(photo))  # the page recovers with the next good photo
        wait_done(page, "+30")
        assert page.locator("#status").get_attribute("class") == "" and preview.is_visible()


def serious_violations(page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now, one line each."""
    page.add_script_tag(path=str(AXE_JS))
    violations = page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']})).violations
        .map((v) => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' '))}))""")
    return [f"{v['id']} ({v['impact']}): {v['help']} at {', '.join(v['nodes'][:3])}"
            for v in violations if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("device", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_axe_finds_no_serious_or_critical_accessibility_violations(browser, server_url, photo, not_a_photo, device):
    assert AXE_JS.is_file(), (f"no axe-core at {AXE_JS}: `make test` installs it "
                              "(npm install --prefix .cache/axe axe-core), or set AXE_CORE_JS to axe.min.js")
    with Offline(browser, server_url, **device) as session:
        page = session.page
        page.goto(server_url)
        page.wait_for_function(READY)
        assert serious_violations(page) == []  # before any query
        page.set_input_files("#file", str(photo))
        wait_done(page, "+30")
        assert serious_violations(page) == []  # with the results shown
        page.set_input_files("#file", str(not_a_photo))
        page.wait_for_function("document.getElementById('status').className === 'error'")
        assert serious_violations(page) == []  # with an error shown
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= device["viewport"]["width"], f"the page is {width} px wide: it scrolls sideways"


def test_the_api_docs_render_with_no_network(browser, server_url):
    with Offline(browser, server_url, **DESKTOP) as session:
        session.page.goto(server_url + "/docs")
        session.page.wait_for_selector(".swagger-ui .opblock-summary-path[data-path='/query']", timeout=15_000)
        session.page.wait_for_load_state("networkidle")
        assert session.elsewhere == [] and session.errors == [], (session.elsewhere, session.errors)
