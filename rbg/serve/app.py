"""The HTTP API and the query page over one QueryEngine: POST /query, GET /gallery/{row}.png, /health,
/info, the OpenAPI schema at /openapi.json (browsable at /docs), and the single-page UI at /.

Nothing the client sends names a file: photos arrive as uploaded bytes, gallery faces as index rows,
and the page's files are read from the package when the app is made. Every refusal is a 4xx with a
one-line JSON body {"error": "..."}. /docs loads Swagger UI from the fastapi-offline package's copy, so
it works with no network; there is no /redoc, whose page always asks its maker's site for a logo.
"""

from __future__ import annotations

import asyncio
import base64
import io
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from importlib import resources

import numpy as np
from fastapi import FastAPI, File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from PIL import Image
from starlette.exceptions import HTTPException

from facedata.detect import DetectConfig, detect_config
from facedata.errors import UserError
from retrieval.search import edit_target
from rbg.serve.batcher import QueryBatcher
from rbg.serve.engine import Query, QueryEngine
from rbg.serve.photo import ImageTooLarge, NotAnImage, upload_face

PAGE_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
FAVICON = "favicon.ico"  # served at /favicon.ico, where browsers ask for it
THREADED_DECODE_BYTES = 256 * 1024  # decode larger uploads off the event loop


@dataclass(frozen=True)
class ServeConfig:
    """Where the server listens and what it accepts."""

    host: str = "127.0.0.1"  # loopback only unless asked: the API has no authentication
    port: int = 8000
    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    max_k: int = 100
    max_batch: int = 32  # queries answered by one generator call
    detector: str = DetectConfig.detector  # finds the face of an uploaded photo (facedata.detect.DETECTORS)
    min_face: int | None = None  # px: the narrowest face looked for in an upload (None: DetectConfig's)
    framing: str | None = None  # the photo framing's folder, where one crops the uploads (retrieval.photo_framing)


def error(status: int, message: str) -> JSONResponse:
    """The API's refusal: a status and {"error": one line}."""
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


class BodyLimit:
    """ASGI middleware: refuse a request body too big for an upload of `upload_limit` bytes, or of unknown
    length, before reading any of it."""

    FORM_ROOM = 64 * 1024  # the multipart headers and the form's other fields

    def __init__(self, app, upload_limit: int):
        self.app = app
        self.upload_limit = upload_limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            length = dict(scope["headers"]).get(b"content-length")
            refusal = None
            if length is None:
                refusal = error(411, "the request needs a Content-Length header (uploads are limited in size)")
            elif not length.isdigit():
                refusal = error(400, f"bad Content-Length header {length.decode(errors='replace')!r}")
            elif int(length) > self.upload_limit + self.FORM_ROOM:
                refusal = error(413, f"request of {int(length):,} bytes: uploads are limited to {self.upload_limit:,} bytes")
            if refusal is not None:
                return await refusal(scope, receive, send)
        await self.app(scope, receive, send)


def png_bytes(image: np.ndarray) -> bytes:
    """A (H, W) uint8 image as PNG file bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def png_data_url(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def page_files() -> dict[str, bytes]:
    """The UI's files, read once from the package (no build step, nothing fetched from elsewhere)."""
    folder = resources.files("rbg.serve") / "static"
    return {name: (folder / name).read_bytes() for name in ("index.html", FAVICON, *PAGE_FILES)}


def create_app(engine: QueryEngine, config: ServeConfig = ServeConfig(), framing=None) -> FastAPI:
    """The FastAPI app answering queries with `engine`; its batcher thread stops when the app shuts down.
    With a photo `framing` (retrieval.photo_framing.PhotoFraming) uploaded photos are cropped by it."""
    batcher = QueryBatcher(engine.answer, max_batch=config.max_batch)
    files = page_files()
    size = tuple(engine.generator.image_size)
    edit = engine.edit_factor
    max_k = min(config.max_k, len(engine))
    detect = detect_config(config.detector, config.min_face)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        batcher.close()

    app = FastAPIOffline(title="retrieval by generation", version="1", lifespan=lifespan,
                         favicon_url=f"/{FAVICON}", redoc_url=None,
                         swagger_ui_parameters={"validatorUrl": None},  # no call to the online validator
                         description="Generate a face in a target pose or accessory, then find that person in the gallery.")
    app.state.batcher = batcher
    app.state.engine = engine
    app.add_middleware(BodyLimit, upload_limit=config.max_upload_bytes)

    @app.exception_handler(HTTPException)
    async def http_refusal(request, exc: HTTPException):
        return error(exc.status_code, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
        return error(422, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(UserError)
    async def user_refusal(request, exc: UserError):
        status = 415 if isinstance(exc, NotAnImage) else 413 if isinstance(exc, ImageTooLarge) else 400
        return error(status, str(exc))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(files["index.html"])

    @app.get(f"/{FAVICON}", include_in_schema=False)
    async def favicon():
        return Response(files[FAVICON], media_type="image/vnd.microsoft.icon",
                        headers={"Cache-Control": "max-age=86400"})

    @app.get("/static/{name}", include_in_schema=False)
    async def page_file(name: str):
        if name not in PAGE_FILES:
            raise HTTPException(404, f"no page file '{name}'")
        return Response(files[name], media_type=PAGE_FILES[name])

    @app.get("/health", summary="Whether the server answers, and its gallery size")
    async def health():
        return {"status": "ok", "gallery_size": len(engine)}

    @app.get("/info", summary="The model, feature layer, FAISS factory, gallery size and target vocabulary")
    async def info():
        generator, index = engine.generator, engine.index
        return {
            "model": getattr(getattr(generator, "path", None), "name", None),
            "checkpoint_sha256": generator.checkpoint_hash,
            "task": generator.task,
            "edit_factor": edit,
            "vocabulary": list(engine.vocabulary),
            "factors": {f: list(v) for f, v in engine.factor_vocabularies.items()},  # one target per factor
            "image_size": list(size),
            "layer": index.layer,
            "factory": index.info.factory,
            "dimension": index.info.dimension,
            "gallery_size": len(engine),
            "gallery_name": index.info.gallery.get("name"),
            "limits": {"max_upload_bytes": config.max_upload_bytes, "max_pixels": config.max_pixels, "max_k": max_k},
            "detector": framing.detect.detector if framing is not None else config.detector,
            "min_face": (framing.detect if framing is not None else detect).min_face,  # px, at least
            "min_face_share": (framing.detect if framing is not None else detect).min_face_share,  # of the shorter side
            "framing": config.framing,  # the photo framing cropping the uploads, if any (rbg serve --framing)
            "int8": bool(getattr(generator, "int8_networks", None)),  # queries generated in int8 (rbg serve --int8)
        }

    @app.get("/gallery/{row}.png", summary="A gallery face by index row", response_class=Response,
             responses={200: {"content": {"image/png": {}}}, 404: {"description": "no such row"}})
    async def gallery_face(row: int):
        try:
            image = engine.gallery_image(row)
        except UserError as exc:
            raise HTTPException(404, str(exc)) from None
        return Response(png_bytes(image), media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.post("/query", summary="Generate the face in the target value and return the k nearest gallery faces")
    async def query(
        image: UploadFile | None = File(None, description="A face photo (PNG, JPEG, …); or give row"),
        row: int | None = Form(None, description="A gallery row as the query face (its identity is known)"),
        target: str | None = Form(None, description="The target value, e.g. +30 or sunglasses"),
        pose: str | None = Form(None, description="Same as target, for a pose model; with accessory for a "
                                                  "pose+accessory one (a factor left out keeps a row's own value)"),
        accessory: str | None = Form(None, description="Same as target, for an accessory model; see pose"),
        occluded: str | None = Form(None, description="Same as target, for a completion model"),
        illumination: str | None = Form(None, description="Same as target, for an illumination model"),
        k: int = Form(5, description="How many gallery faces to return"),
        align: str = Form("auto", description="auto: detect and eye-align the face of a photo not already of the "
                                              "model's size (as rbg query); yes; no: resize the whole image"),
        face: int = Form(1, description="With alignment: the face-th largest face of the photo"),
    ):
        known = engine.row_truth(row) if row is not None and len(engine.factor_vocabularies) > 1 else None
        canonical = edit_target(engine.generator, target, options=False, known=known, pose=pose, accessory=accessory,
                                occluded=occluded, illumination=illumination)
        if not 1 <= k <= max_k:
            raise UserError(f"k={k} is out of range (use 1 ≤ k ≤ {max_k})")
        if (image is None) == (row is None):
            raise UserError("give one query face: an image upload or a gallery row, not both or neither")
        notes: list[str] = []
        if row is not None:
            try:
                work = engine.gallery_query(row, canonical, k)
            except UserError as exc:
                raise HTTPException(404, str(exc)) from None
        else:
            name = image.filename or "upload"
            data = await image.read(config.max_upload_bytes + 1)
            if len(data) > config.max_upload_bytes:
                raise ImageTooLarge(f"upload '{name}': uploads are limited to {config.max_upload_bytes:,} bytes")
            if align not in ALIGN_CHOICES:
                raise UserError(f"align='{align}' is not a choice (valid: {', '.join(ALIGN_CHOICES)})")
            args = (data, name, size, config.max_pixels, ALIGN_CHOICES[align], face, detect, framing)
            quick = len(data) <= THREADED_DECODE_BYTES and align == "no"
            query_face, notes, crops = upload_face(*args) if quick else await run_in_threadpool(upload_face, *args)
            work = Query(image=query_face, target=canonical, k=k, label=name, crops=crops)
        answer, wait_ms, batch_size = await asyncio.wrap_future(batcher.submit(work))
        return JSONResponse({
            "edit_factor": edit,
            "target": canonical,
            "k": k,
            "query": {"label": work.label, "truth": work.truth, "image": png_data_url(work.image), "notes": notes},
            "generated": png_data_url(answer.generated),
            "results": [{**hit, "image": f"/gallery/{hit['gallery_row']}.png"} for hit in answer.hits],
            "timing_ms": {"wait": round(wait_ms, 3), "generate": round(answer.generate_ms, 3),
                          "search": round(answer.search_ms, 3), "batch_size": batch_size},
        })  # plain JSON types already: no jsonable_encoder walk

    app.state.config = asdict(config)
    return app


ALIGN_CHOICES = {"auto": None, "yes": True, "no": False}  # the form's align field → photo_face's align
