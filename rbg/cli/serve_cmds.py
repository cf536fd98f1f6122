"""`rbg serve`: the HTTP API and query page over a gallery index, model and index loaded once."""

from __future__ import annotations

from pathlib import Path

import click

from rbg.cli.face_options import detector_option


@click.command()
@click.option("--index", "index_path", required=True, type=click.Path(path_type=Path), help="Index folder (rbg index build).")
@click.option("--model", type=click.Path(path_type=Path), default=None, help="Checkpoint that built the index [the one index.json records].")
@click.option("--gallery", type=click.Path(path_type=Path), default=None, help="The build's gallery FaceSet for the pictures, if moved [the one index.json records].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 exposes the API (it has no authentication).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True, help="Largest accepted upload.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=4096 * 4096, show_default=True, help="Largest accepted image, in pixels.")
@click.option("--max-batch", type=click.IntRange(min=1), default=32, show_default=True, help="Concurrent queries answered by one generator call.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Torch and FAISS threads [their default].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--int8", is_flag=True, default=False,
              help="All-views index on the CPU: generate queries in int8, about 1.75× faster, calibrated on 64 gallery "
                   "faces at start (~10 s); C1 R@1 on KDEF val 87.5 against float32's 87.7 through the default index [off: float32].")
@click.option("--framing", type=click.Path(path_type=Path), default=None,
              help="A photo framing of the model's dataset (rbg framing fit), as rbg query --framing: uploads are cropped "
                   "as the dataset framed its faces, seven ways, with the framing's own detector [one crop].")
@detector_option
def serve(index_path: Path, model: Path | None, gallery: Path | None, host: str, port: int, max_upload_mb: float,
          max_pixels: int, max_batch: int, threads: int | None, device: str, int8: bool, framing: Path | None,
          detector: str, min_face: int | None) -> None:
    """Serve queries over HTTP: POST /query, GET /gallery/ROW.png, /health, /info, /docs, and the page at /.

    \b
    rbg serve --index runs/demo/index            # then open http://127.0.0.1:8000/
    """
    import torch
    import uvicorn

    from retrieval.query import open_galleries
    from retrieval.search import open_index, use_int8_queries
    from rbg.serve.app import ServeConfig, create_app
    from rbg.serve.engine import QueryEngine

    _check_listen(host, port)  # before the model loads: a busy port fails at once, in one line
    if threads is not None:
        import faiss

        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)
    generator, index = open_index(index_path, model, "cpu" if int8 and device == "auto" else device)
    galleries = open_galleries(index, gallery)
    if int8:
        faces = use_int8_queries(generator, index, galleries)
        click.echo(f"int8 queries: calibrated on {faces} gallery faces", err=True)
    engine = QueryEngine(generator, index, galleries)
    photo_framing = None
    if framing is not None:
        from retrieval.photo_framing import PhotoFraming

        photo_framing = PhotoFraming.load(framing)
    config = ServeConfig(host=host, port=port, max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                         max_pixels=max_pixels, max_batch=max_batch, detector=detector, min_face=min_face,
                         framing=str(framing) if framing is not None else None)
    app = create_app(engine, config, photo_framing)
    click.echo(f"serving {index_path}: {len(engine)} gallery faces, {generator.edit_factor} model, "
               f"{index.layer} features, FAISS {index.info.factory}", err=True)
    click.echo(f"page: http://{host}:{port}/   API schema: http://{host}:{port}/docs", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _check_listen(host: str, port: int) -> None:
    """Refuse an address this process cannot listen on (port taken, no such interface) as a UserError."""
    import socket

    from facedata.errors import UserError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(infos[0][4])
    except OSError as exc:
        raise UserError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None
