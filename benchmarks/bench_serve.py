"""Load on `rbg serve`: latency percentiles and queries/s for 1, 4 and 16 concurrent clients on 127.0.0.1.

    .venv/bin/python benchmarks/bench_serve.py --index runs/demo/index --out runs/bench/serve.json

The server runs as its own process (`rbg serve`, torch on --threads threads); the clients are threads
of this process, each with one keep-alive connection, posting face photos from the gallery (PNG
uploads, random targets) to POST /query. Each level stops after --requests queries or --seconds,
whichever comes first, after --warmup queries that are not counted. Each answer says how long its
batch spent generating and searching, so the server's own overhead (HTTP, upload decoding, JSON,
waiting for the worker) is the client's latency minus those, per request, in the same run.
`--screenshot PATH` also has Chromium take a picture of the query page on the same server.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from facedata.atomic import write_json
from facedata.provenance import provenance
from index.faiss_index import GalleryIndex, gallery_codes, image_rows
from retrieval.query import open_galleries

BOUNDARY = "rbg-bench-boundary"
BROWSER = Path("/usr/bin/chromium")


@dataclass(frozen=True)
class ServeBenchConfig:
    """What to measure, and the bounds of every level."""

    index: str = "runs/demo/index"
    clients: tuple[int, ...] = (1, 4, 16)
    requests: int = 400  # per level, at most
    seconds: float = 30.0  # per level, at most
    warmup: int = 20
    k: int = 5
    threads: int = 2  # the server's torch threads
    max_batch: int = 32
    payloads: int = 64
    seed: int = 0


def multipart(fields: dict[str, str], png: bytes) -> bytes:
    """A multipart/form-data body with the face as field `image` and the given text fields."""
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="face.png"\r\n'
             f"Content-Type: image/png\r\n\r\n".encode() + png + b"\r\n"]
    for name, value in fields.items():
        parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def query_bodies(index_path: str, count: int, k: int, seed: int) -> list[bytes]:
    """POST /query bodies: PNGs of random gallery faces, each with a random target of the index's vocabulary."""
    index = GalleryIndex.load(index_path)
    galleries = open_galleries(index)
    codes, positions = gallery_codes(index.faces), image_rows(index.faces)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(index), count)
    targets = rng.choice(np.asarray(index.info.vocabulary), count)
    bodies = []
    for row, target in zip(rows, targets):
        buffer = io.BytesIO()
        Image.fromarray(galleries[codes[row]].image(int(positions[row]))).save(buffer, format="PNG")
        bodies.append(multipart({"target": str(target), "k": str(k)}, buffer.getvalue()))
    return bodies


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(config: ServeBenchConfig, port: int) -> subprocess.Popen:
    """`rbg serve` on 127.0.0.1:port in its own process, returned once /health answers."""
    command = [sys.executable, "-c", "from rbg.cli import main; main()", "serve", "--index", config.index,
               "--port", str(port), "--threads", str(config.threads), "--max-batch", str(config.max_batch)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"rbg serve exited: {server.stderr.read().decode(errors='replace').strip()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("rbg serve did not answer /health within 120 s")


def run_level(port: int, bodies: list[bytes], clients: int, requests: int, seconds: float) -> tuple[list[dict], float]:
    """`clients` threads posting bodies until `requests` are sent or `seconds` pass: one record per request, wall seconds."""
    lock = threading.Lock()
    sent = [0]
    records: list[dict] = []
    start = time.perf_counter()
    deadline = start + seconds

    def client(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        while time.perf_counter() < deadline:
            with lock:
                if sent[0] >= requests:
                    break
                body = bodies[sent[0] % len(bodies)]
                sent[0] += 1
            began = time.perf_counter()
            try:
                connection.request("POST", "/query", body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                latency = 1000 * (time.perf_counter() - began)
                record = {"latency_ms": latency, "status": response.status}
                if response.status == 200:
                    record.update(json.loads(payload)["timing_ms"])
            except (OSError, http.client.HTTPException) as exc:
                record = {"latency_ms": 1000 * (time.perf_counter() - began), "status": 0, "error": repr(exc)}
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with lock:
                records.append(record)
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return records, time.perf_counter() - start


def summarize(clients: int, records: list[dict], wall: float) -> dict:
    """Latency percentiles, queries/s, failures, and the server's share of each answered request."""
    ok = [r for r in records if r["status"] == 200]
    latency = np.array([r["latency_ms"] for r in ok])
    work = np.array([r["generate"] + r["search"] for r in ok])
    overhead = np.array([r["latency_ms"] - r["wait"] - r["generate"] - r["search"] for r in ok])
    pct = lambda values, q: round(float(np.percentile(values, q)), 2) if len(values) else None  # noqa: E731
    return {
        "clients": clients, "requests": len(records), "failed": len(records) - len(ok), "seconds": round(wall, 2),
        "qps": round(len(ok) / wall, 1) if wall > 0 else None,
        "p50_ms": pct(latency, 50), "p95_ms": pct(latency, 95), "p99_ms": pct(latency, 99),
        "generate_search_p50_ms": pct(work, 50), "generate_p50_ms": pct([r["generate"] for r in ok], 50),
        "search_p50_ms": pct([r["search"] for r in ok], 50), "wait_p50_ms": pct([r["wait"] for r in ok], 50),
        "overhead_p50_ms": pct(overhead, 50),
        "mean_batch": round(float(np.mean([r["batch_size"] for r in ok])), 2) if ok else None,
    }


def screenshot(port: int, out: Path, row: int, target: str) -> Path:
    """The query page after a search for gallery face `row` in `target`, as Chromium draws it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(BROWSER), args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 620})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.getElementById('target').options.length > 0")
            page.select_option("#target", target)
            page.evaluate(f"setRow({int(row)})")  # what the random-face button does, with a chosen row
            page.wait_for_function(f"document.getElementById('results').dataset.target === '{target}' && "
                                   "document.getElementById('status').textContent.startsWith('Done')")
            page.wait_for_load_state("networkidle")
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
        finally:
            browser.close()
    return out


def print_table(rows: list[dict]) -> None:
    print("| clients | requests | failed | q/s | p50 ms | p95 ms | p99 ms | generate+search p50 ms | overhead p50 ms | mean batch |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clients']} | {r['requests']} | {r['failed']} | {r['qps']} | {r['p50_ms']} | {r['p95_ms']} | "
              f"{r['p99_ms']} | {r['generate_search_p50_ms']} | {r['overhead_p50_ms']} | {r['mean_batch']} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = ServeBenchConfig()
    parser.add_argument("--index", default=defaults.index)
    parser.add_argument("--clients", type=int, nargs="+", default=list(defaults.clients))
    parser.add_argument("--requests", type=int, default=defaults.requests, help="per level, at most")
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="per level, at most")
    parser.add_argument("--warmup", type=int, default=defaults.warmup)
    parser.add_argument("-k", type=int, default=defaults.k)
    parser.add_argument("--threads", type=int, default=defaults.threads, help="the server's torch threads")
    parser.add_argument("--max-batch", type=int, default=defaults.max_batch)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/serve.json"))
    parser.add_argument("--screenshot", type=Path, default=None, help="also save the query page as this PNG")
    parser.add_argument("--screenshot-row", type=int, default=286)
    parser.add_argument("--screenshot-target", default="+30")
    args = parser.parse_args(argv)
    config = ServeBenchConfig(index=args.index, clients=tuple(args.clients), requests=args.requests, seconds=args.seconds,
                              warmup=args.warmup, k=args.k, threads=args.threads, max_batch=args.max_batch)
    bodies = query_bodies(config.index, config.payloads, config.k, config.seed)
    port = free_port()
    server = start_server(config, port)
    try:
        run_level(port, bodies, 1, config.warmup, 60.0)
        rows = []
        for clients in config.clients:
            records, wall = run_level(port, bodies, clients, config.requests, config.seconds)
            rows.append(summarize(clients, records, wall))
            print(f"{clients} clients: {rows[-1]['qps']} q/s, p50 {rows[-1]['p50_ms']} ms", file=sys.stderr)
        shot = None
        if args.screenshot is not None:
            shot = str(screenshot(port, args.screenshot, args.screenshot_row, args.screenshot_target))
    finally:
        server.terminate()
        server.wait(30)
    print_table(rows)
    write_json(args.out, {"config": asdict(config), "levels": rows, "screenshot": shot, "cpu_count": os.cpu_count(),
                          "load_average": os.getloadavg(),
                          "provenance": provenance(seed=config.seed)})
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
