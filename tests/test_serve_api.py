"""`rbg serve`'s HTTP API on a tiny marker gallery: what a query returns, the gallery faces, the limits,
and every refusal as a 4xx with a one-line JSON error."""

from __future__ import annotations

import io
import re
import struct
import threading
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from fakes import POSES, SIZE, FakeGenerator, face, save_untrained, tiny_gallery
from fastapi.testclient import TestClient
from PIL import Image

from facedata.faceset import FaceSet
from generator.inference import Generator
from index.faiss_index import build_index
from rbg.cli import cli
from retrieval.query import open_gallery, result_table
from rbg.serve.app import ServeConfig, create_app
from rbg.serve.batcher import QueryBatcher
from rbg.serve.engine import Query, QueryEngine

LIMITS = ServeConfig(max_upload_bytes=100_000, max_pixels=1_000_000, max_k=20)


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def decoded(data_url_or_bytes) -> np.ndarray:
    if isinstance(data_url_or_bytes, str):
        import base64

        data_url_or_bytes = base64.b64decode(data_url_or_bytes.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data_url_or_bytes)))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The app over a 3-identity × 7-pose × 2-light marker gallery indexed by the exact fake generator."""
    root = tmp_path_factory.mktemp("serve")
    tiny_gallery().write(root / "gallery")
    index = build_index(FakeGenerator(), FaceSet.open(root / "gallery"), root / "index", batch_size=16, progress=False)
    engine = QueryEngine(FakeGenerator(), index, open_gallery(index))
    with TestClient(create_app(engine, LIMITS)) as client:
        yield client, engine


def ask(client, image: np.ndarray | None = None, **fields):
    files = {"image": ("face.png", png(image), "image/png")} if image is not None else None
    return client.post("/query", files=files, data={name: str(v) for name, v in fields.items()})


def refused(response, status: int, *fragments: str) -> bool:
    """A refusal: the status, and a body that is exactly {"error": one line naming the problem}."""
    body = response.json()
    return (response.status_code == status and set(body) == {"error"} and "\n" not in body["error"]
            and all(f in body["error"] for f in fragments))


def test_an_uploaded_face_generated_in_the_target_pose_finds_that_person_in_that_pose_first(served):
    client, _ = served
    response = ask(client, face(1, POSES.index("-30")), target="+30", k=3)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["target"] == "+30" and answer["edit_factor"] == "pose" and answer["k"] == 3
    results = answer["results"]
    assert [r["rank"] for r in results] == [1, 2, 3]
    assert results[0]["identity"] == "id01" and results[0]["factors"]["pose"] == "+30"
    assert [r["distance"] for r in results] == sorted(r["distance"] for r in results)
    assert all(r["correct"] is None for r in results)  # an upload's identity is unknown
    assert np.array_equal(decoded(answer["generated"]), face(1, POSES.index("+30")))
    assert results[0]["image"] == f"/gallery/{results[0]['gallery_row']}.png"


def test_a_gallery_row_query_knows_its_identity_and_marks_every_hit(served):
    client, engine = served
    row = int(np.flatnonzero((engine.index.faces["identity"] == "id02") & (engine.index.faces["pose"] == "0"))[0])
    answer = ask(client, row=row, target="+45", k=5).json()
    assert answer["query"]["truth"]["identity"] == "id02"
    marks = [r["correct"] for r in answer["results"]]
    assert marks[0] is True and False in marks and None not in marks


def test_the_target_may_be_given_under_the_edited_factors_name(served):
    client, _ = served
    by_target = ask(client, face(0, 0), target="+15").json()["results"]
    by_pose = ask(client, face(0, 0), pose="+15").json()["results"]
    assert by_target == by_pose


def test_unknown_or_missing_targets_are_refused_listing_the_valid_values(served):
    client, _ = served
    assert refused(ask(client, face(0, 0), target="+31"), 400, "unknown pose '+31'", "-45, -30")
    assert refused(ask(client, face(0, 0), accessory="cap"), 400, "edits pose only", "accessory")
    assert refused(ask(client, face(0, 0)), 400, "give the target", "+45")
    assert refused(ask(client, face(0, 0), target="0", pose="0"), 400, "give the target once")


@pytest.mark.parametrize("k, status, fragment", [(0, 400, "k=0"), (21, 400, "k=21"), (-3, 400, "1 ≤ k ≤ 20"),
                                                 ("two", 422, "k:")])
def test_a_bad_k_is_refused(served, k, status, fragment):
    client, _ = served
    assert refused(ask(client, face(0, 0), target="0", k=k), status, fragment)


def test_k_is_capped_by_a_small_gallery(tmp_path):
    gallery = tiny_gallery(identities=1, lights=1)  # 7 faces
    gallery.write(tmp_path / "g")
    index = build_index(FakeGenerator(), FaceSet.open(tmp_path / "g"), tmp_path / "i", batch_size=8, progress=False)
    with TestClient(create_app(QueryEngine(FakeGenerator(), index, open_gallery(index)), LIMITS)) as client:
        assert refused(ask(client, face(0, 0), target="0", k=8), 400, "1 ≤ k ≤ 7")
        assert client.get("/info").json()["limits"]["max_k"] == 7


def test_one_query_face_is_needed_an_upload_or_a_row_not_both(served):
    client, _ = served
    assert refused(ask(client, target="0"), 400, "an image upload or a gallery row")
    assert refused(ask(client, face(0, 0), row=1, target="0"), 400, "not both")
    assert refused(ask(client, row=10_000, target="0"), 404, "row 10000")


def test_uploads_that_are_not_images_are_refused_naming_the_upload(served):
    client, _ = served
    for content in (b"hello, not a picture", b"", png(face(0, 0))[:40]):
        response = client.post("/query", files={"image": ("notes.txt", content, "text/plain")}, data={"target": "0"})
        assert refused(response, 415, "upload 'notes.txt'"), response.text


def test_an_image_too_small_to_hold_a_face_is_refused(served):
    client, _ = served
    assert refused(ask(client, np.zeros((3, 3), np.uint8), target="0"), 400, "3×3", "too small")


def test_a_colour_photo_of_another_size_is_converted_with_notes(served):
    client, _ = served
    colour = np.repeat(np.kron(face(2, 3), np.ones((4, 4), np.uint8))[..., None], 3, axis=2)  # (24, 64, 3)
    answer = ask(client, colour, target="0", align="no").json()
    assert answer["query"]["notes"] == ["RGB image converted to grayscale", f"24×64 image resized to the model's {SIZE[0]}×{SIZE[1]}"]
    assert decoded(answer["query"]["image"]).shape == SIZE


def test_an_upload_over_the_size_limit_is_refused_before_it_is_read(served):
    client, _ = served
    noise = np.random.default_rng(0).integers(0, 256, (600, 600), dtype=np.uint8)  # ~360 kB as PNG
    assert refused(ask(client, noise, target="0"), 413, "limited to 100,000 bytes")
    just_over = png(face(0, 0)) + bytes(100_001)  # within the form's room, over the upload's limit
    response = client.post("/query", files={"image": ("big.png", just_over, "image/png")}, data={"target": "0"})
    assert refused(response, 413, "upload 'big.png'", "limited to 100,000 bytes")


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(served):
    client, _ = served
    blank = np.zeros((1001, 1000), np.uint8)  # compresses to a few kB, decodes to 1,001,000 pixels
    assert refused(ask(client, blank, target="0"), 413, "1000×1001", "1,000,000")


def png_header(width: int, height: int) -> bytes:
    """A grayscale PNG that says it is width × height but holds no pixels: its header and an empty IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", b"") + chunk(b"IEND", b""))


def test_an_image_pillow_calls_a_decompression_bomb_is_over_the_pixel_limit_too(served):
    client, _ = served
    for width, height in ((1001, 1000), (50_000, 50_000)):  # under and far over Pillow's own bomb limit
        response = client.post("/query", files={"image": ("bomb.png", png_header(width, height), "image/png")},
                               data={"target": "0"})
        assert refused(response, 413, "upload 'bomb.png'", "1,000,000"), response.text


def test_a_body_without_content_length_is_refused(served):
    client, _ = served
    response = client.post("/query", content=iter([b"--x\r\n"]), headers={"content-type": "multipart/form-data; boundary=x"})
    assert refused(response, 411, "Content-Length")


def test_gallery_faces_are_served_by_index_row_and_nothing_else(served):
    client, engine = served
    row = 5
    response = client.get(f"/gallery/{row}.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image_row = int(engine.index.faces["image_row"].iloc[row])
    assert np.array_equal(decoded(response.content), engine.gallery.image(image_row))
    assert refused(client.get(f"/gallery/{len(engine)}.png"), 404, f"rows 0..{len(engine) - 1}")
    assert refused(client.get("/gallery/-1.png"), 404, "row -1")
    assert refused(client.get("/gallery/five.png"), 422, "row")
    for path in ("/gallery/../index.json", "/gallery/%2e%2e%2findex.json", "/static/..%2f..%2fapp.py", "/static/index.html"):
        assert client.get(path).status_code == 404, path


def test_health_and_info_describe_the_model_the_index_and_the_limits(served):
    client, engine = served
    assert client.get("/health").json() == {"status": "ok", "gallery_size": len(engine)}
    info = client.get("/info").json()
    assert info["vocabulary"] == list(POSES) and info["edit_factor"] == "pose"
    assert info["gallery_size"] == len(engine) == 42 and info["layer"] == "mid" and info["factory"] == "Flat"
    assert info["limits"] == {"max_upload_bytes": 100_000, "max_pixels": 1_000_000, "max_k": 20}
    assert info["detector"] == "blaze"  # the photo path's default, as rbg query's
    assert (info["min_face"], info["min_face_share"]) == (16, 0.0)  # every upload searched down to 16-px faces
    assert info["int8"] is False  # float32 queries unless rbg serve --int8


def test_the_openapi_schema_lists_every_endpoint(served):
    client, _ = served
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/query", "/gallery/{row}.png", "/health", "/info"} <= set(paths)
    fields = paths["/query"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert fields  # the form's fields are documented (a $ref to the body schema)


def test_the_page_is_served_from_package_files_that_load_nothing_from_elsewhere(served):
    client, _ = served
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/static/app.js">' in page.text and 'href="/static/style.css"' in page.text
    script, style = client.get("/static/app.js"), client.get("/static/style.css")
    assert "javascript" in script.headers["content-type"] and "text/css" in style.headers["content-type"]
    for text in (page.text, script.text, style.text):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_the_favicon_is_a_small_icon_from_the_package(served):
    client, _ = served
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response.headers["content-type"] == "image/vnd.microsoft.icon"
    assert len(response.content) < 8_000
    icon = Image.open(io.BytesIO(response.content))
    assert icon.format == "ICO" and (16, 16) in icon.info["sizes"] and (32, 32) in icon.info["sizes"]
    assert '<link rel="icon" href="/favicon.ico"' in client.get("/").text


def test_the_api_docs_load_their_scripts_and_styles_from_this_server(served):
    client, _ = served
    html = client.get("/docs")
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    urls = re.findall(r'(?:src|href)="([^"]+)"', html.text) + re.findall(r"url: '([^']+)'", html.text)
    assert any(url.endswith("swagger-ui-bundle.js") for url in urls) and "/openapi.json" in urls
    for url in urls:
        assert url.startswith("/"), f"/docs loads {url} from elsewhere"
        assert client.get(url).status_code == 200, url
    assert '"validatorUrl": null' in html.text  # Swagger UI's validator is an online service
    # ReDoc's page always asks its maker's site for a logo, so the server has no /redoc.
    assert refused(client.get("/redoc"), 404, "Not Found")


def test_unknown_routes_and_methods_are_one_line_json_errors(served):
    client, _ = served
    assert refused(client.get("/nothing"), 404, "Not Found")
    assert refused(client.get("/query"), 405, "Method Not Allowed")


def test_a_batch_answers_each_query_as_it_would_be_answered_alone(served):
    _, engine = served
    queries = [Query(face(i, p), target=t, k=k) for i, p, t, k in ((0, 0, "+30", 3), (1, 6, "-45", 5), (2, 3, "0", 1))]
    together = engine.answer(queries)
    for query, batched in zip(queries, together):
        (alone,) = engine.answer([query])
        assert np.array_equal(alone.generated, batched.generated)
        assert alone.hits == batched.hits and len(batched.hits) == query.k


def test_hit_records_say_what_the_query_result_table_says(served):
    _, engine = served
    truth = {"identity": "id01"}
    query = Query(face(1, 2), target="+45", k=6, label="x", truth=truth)
    (answer,) = engine.answer([query])
    features = engine.generator.features(query.image[None], [query.target], layer=engine.index.layer)
    distances, rows = engine.index.search(features, query.k)
    table = result_table(engine.index.faces, distances, rows, ["x"], ["+45"], [truth], "pose")
    assert [h["gallery_row"] for h in answer.hits] == table["gallery_row"].tolist()
    assert [h["identity"] for h in answer.hits] == table["identity"].tolist()
    assert [h["factors"]["illumination"] for h in answer.hits] == table["illumination"].tolist()
    assert [h["kept"] for h in answer.hits] == table["kept_pose"].tolist()
    assert [h["correct"] for h in answer.hits] == [bool(c) for c in table["correct"]]
    np.testing.assert_allclose([h["distance"] for h in answer.hits], table["distance"], rtol=1e-6)


def test_requests_waiting_during_a_batch_share_the_next_one():
    started, release = threading.Event(), threading.Event()
    sizes = []

    def work(items):
        sizes.append(len(items))
        started.set()
        release.wait(5)
        return [item * 10 for item in items]

    batcher = QueryBatcher(work, max_batch=3)
    first = batcher.submit(1)
    assert started.wait(5)
    waiting = [batcher.submit(i) for i in (2, 3, 4, 5)]  # queued while the first batch runs
    release.set()
    results = [f.result(5) for f in (first, *waiting)]
    batcher.close()
    assert sizes == [1, 3, 1]
    assert [r[0] for r in results] == [10, 20, 30, 40, 50] and [r[2] for r in results] == [1, 3, 3, 3, 1]


def test_a_failing_batch_reaches_each_of_its_callers_and_the_worker_goes_on():
    def work(items):
        if "bad" in items:
            raise RuntimeError("batch failed")
        return items

    batcher = QueryBatcher(work)
    with pytest.raises(RuntimeError, match="batch failed"):
        batcher.submit("bad").result(5)
    assert batcher.submit("good").result(5)[0] == "good"
    batcher.close()


def test_rbg_serve_refuses_a_missing_index_in_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["serve", "--index", str(tmp_path / "none")])
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "no such index folder" in errors[0]


def test_rbg_serve_refuses_a_port_already_taken_before_loading_anything(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", "--index", str(tmp_path / "none"), "--port", str(port)])
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1 and f"--port {port}: cannot listen there" in errors[0]


def test_a_photo_goes_through_face_detection_like_rbg_query(served):
    from facedata.photo import NoFaceError
    from rbg.serve.photo import upload_face

    client, _ = served
    noise = np.random.default_rng(0).integers(0, 255, (96, 96), dtype=np.uint8)  # not the model's size: aligned
    with pytest.raises(NoFaceError, match="upload 'n.png': no face found"):
        upload_face(png(noise), "n.png", (32, 32), 10**7)
    assert upload_face(png(noise), "n.png", (32, 32), 10**7, align=False)[0].shape == (32, 32)
    assert refused(ask(client, noise, target="0"), 400, "aligned")  # this model's faces are not square
    assert refused(ask(client, noise, target="0", align="maybe"), 400, "align='maybe'", "auto, yes, no")


def test_the_server_s_detector_finds_the_face_of_an_upload(monkeypatch):
    """rbg serve --detector NAME reaches the photo path of every upload, as rbg query --detector does."""
    import rbg.serve.photo as photo
    from facedata.detect import DetectConfig

    seen = []
    monkeypatch.setattr(photo, "photo_face", lambda *a, **k: seen.append(k["detect"]) or np.zeros((32, 32), np.uint8))
    face = np.random.default_rng(0).integers(0, 255, (96, 96), dtype=np.uint8)
    photo.upload_face(png(face), "f.png", (32, 32), 10**7, None, 1, DetectConfig(detector="haar"))
    photo.upload_face(png(face), "f.png", (32, 32), 10**7)
    assert [d.detector for d in seen] == ["haar", "blaze"]
    text = " ".join(CliRunner().invoke(cli, ["serve", "--help"]).output.split())
    assert "--detector" in text and "[default: blaze]" in text
