"""What an attachment adds before the request leaves: reading the file, the send, the request, the page.

Three parts (``--parts``, default all), each against a baseline measured in the same run:

* **photo**: a 4000×3000 JPEG photo (noise over gradients, so it compresses like a photo: about 4.6 MB; EXIF with a
  camera, a date and a GPS position) through ``chat.attachments.prepare`` (re-encoded without metadata, scaled to
  2048 px): its time (median of ``--prepare-runs``), the output's size, whether any EXIF is left.
* **pdf**: a 100-page PDF written with fpdf2 (about 300 words a page) through ``prepare`` (pypdf extracts its text):
  its time, the characters extracted.

  For both, with Parley's ``Engine`` in this process (uvloop when installed) on a fresh SQLite file and
  ``tests.fake_upstream.FakeUpstream`` in a spawned child process (as in ``bench.engine_load``; it records when the
  whole request had been read, ``StreamRecord.received_at``, and here also the request body's bytes): the time from
  the call to ``engine.send`` to the upstream having received the whole request, for the same message (a new
  conversation each time) (i) with no attachment, the baseline; (ii) with the file attached beforehand
  (``engine.attach`` not timed); (iii) with ``engine.attach`` included (the clock starts before it). Each is the
  median over ``--sends`` runs, the cases interleaved; every run attaches a file of its own (a few pixels, or the
  PDF's title, differ), so nothing is found already stored. Also the request body's bytes as received upstream.
* **page**: ``app.py`` in a subprocess (``tests.browser.serve``) against the same fake; two conversations made over
  ``/api`` (``POST /api/conversations``; ``POST /api/attachments``; ``POST /api/conversations/{id}/messages``, its
  event stream read to the end), the same message with the photo and without. Each page ``/c/{id}`` is opened in
  headless Chromium, in a fresh browser context every time (an empty cache), ``--page-loads`` times; the bytes it
  received are counted from the DevTools protocol: every HTTP response's ``encodedDataLength`` (headers included,
  at ``Network.loadingFinished``) and every WebSocket frame's payload (``Network.webSocketFrameReceived``), until the
  answer is shown, the network is idle and no event came for ``QUIET`` seconds. Requests under
  ``/api/attachments/`` (the thumbnail) are listed apart.

Printed: a table per part with ratios to the baseline; saved: JSON in ``bench/results/attachments-*.json`` with the
machine's description.

Run from the repository root::

    .venv/bin/python -m bench.attachments            # about a minute
    .venv/bin/python -m bench.attachments --quick    # a smoke run
    .venv/bin/python -m bench.attachments --parts photo,pdf
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from PIL.ExifTags import IFD

from bench.compare import UpstreamProcess, loop_factory
from bench.streaming import machine_info

RESULTS = Path(__file__).parent / "results"
MODEL = "fake-model"
#: The message sent with and without a file.
TEXT = "Here is a file for you: tell me what is in it, in five bullet points."
PHOTO_SIZE = (4000, 3000)
PDF_PAGES = 100
WORDS_PER_PAGE = 300
#: In the PDF's title, replaced by another string of the same length to make each run's file different.
PDF_TAG = b"parley-bench-000000"
#: Seconds without a network event after which a page counts as settled.
QUIET = 1.0
#: The last piece of the fake's answer: the page shows the answer once this is in it.
ANSWER_END = "zqattachmentsend"
PARTS = ("photo", "pdf", "page")

WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there been one all we their has would when if so no more its out up who them time some could "
    "into two than other then only over new years these also after most made first where way well should work "
    "because people any through such even just back good each those being how much state while before must long "
    "light keeper harbour storm lantern ledger tide signal north evening quiet stone river meadow copper window "
    "report quarter revenue budget figure table section summary result method sample measure account review"
).split()


# -- the files ----------------------------------------------------------------------------------------------------


def base_photo() -> Image.Image:
    """4000×3000 RGB: gaussian noise blended with gradients, each channel its own (compresses like a photo)."""
    width, height = PHOTO_SIZE
    gradient = Image.linear_gradient("L").resize(PHOTO_SIZE)
    across = gradient.transpose(Image.Transpose.ROTATE_90).resize(PHOTO_SIZE)
    flipped = gradient.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    channels = [
        Image.blend(Image.effect_noise(PHOTO_SIZE, sigma), shade, 0.5)
        for sigma, shade in ((40, gradient), (50, across), (60, flipped))
    ]
    photo = Image.merge("RGB", channels)
    draw = ImageDraw.Draw(photo)
    for index in range(40):  # some shapes with edges, as in a scene
        x, y = (index * 397) % width, (index * 211) % height
        draw.ellipse((x, y, x + 300, y + 200), fill=((index * 53) % 256, (index * 97) % 256, (index * 31) % 256))
    return photo


def photo_exif() -> Image.Exif:
    """A camera's EXIF: make, model, date, orientation, and a GPS position (which ``prepare`` must not keep)."""
    exif = Image.Exif()
    exif[0x010F] = "Bench Camera Co."  # Make
    exif[0x0110] = "BC-12"  # Model
    exif[0x0112] = 1  # Orientation: upright
    exif[0x0132] = "2026:12:01 10:00:00"  # DateTime
    exif[IFD.GPSInfo] = {1: "N", 2: (52.0, 22.0, 12.5), 3: "E", 4: (4.0, 53.0, 40.25), 5: b"\x00", 6: 12.0}
    return exif


def photo_bytes(photo: Image.Image, variant: int) -> bytes:
    """``photo`` as a JPEG (quality 85, with ``photo_exif``), a small square of it coloured after ``variant`` so that
    each variant is another file (``photo`` is changed in place)."""
    x, y = 16 * (variant % 200), 16 * (variant // 200)
    ImageDraw.Draw(photo).rectangle((x, y, x + 15, y + 15), fill=(variant % 256, (variant * 7) % 256, 255))
    out = io.BytesIO()
    photo.save(out, format="JPEG", quality=85, exif=photo_exif())
    return out.getvalue()


def make_pdf() -> bytes:
    """``PDF_PAGES`` pages of about ``WORDS_PER_PAGE`` words each (a text layer, Helvetica), titled ``PDF_TAG``."""
    from fpdf import FPDF

    rng = random.Random(7)
    pdf = FPDF()
    pdf.set_title(PDF_TAG.decode())
    pdf.set_font("Helvetica", size=10)
    for number in range(1, PDF_PAGES + 1):
        pdf.add_page()
        words = rng.choices(WORDS, k=WORDS_PER_PAGE)
        sentences = [" ".join(words[i : i + 15]).capitalize() + "." for i in range(0, len(words), 15)]
        pdf.multi_cell(0, 5, f"Page {number}. " + " ".join(sentences))
    data = bytes(pdf.output())
    assert data.count(PDF_TAG) == 1
    return data


def pdf_variant(pdf: bytes, variant: int) -> bytes:
    """``pdf`` with another title of the same length (its offsets unchanged): another file, the same text."""
    return pdf.replace(PDF_TAG, f"parley-bench-{variant:06d}".encode())


def time_prepare(data: bytes, name: str, runs: int) -> tuple[list[float], Any]:
    """Seconds of each of ``runs`` calls of ``prepare`` (after one not timed), and the last result."""
    from chat.attachments import prepare

    prepared = prepare(data, name)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        prepared = prepare(data, name)
        times.append(time.perf_counter() - started)
    return times, prepared


# -- send -> upstream ---------------------------------------------------------------------------------------------


async def _one_send(engine: Any, upstream: UpstreamProcess, file: tuple[bytes, str] | None, timed_attach: bool):
    """One message in a new conversation (with ``file`` attached, its ``attach`` timed or not); its figures."""
    since = len(upstream.streams())
    ids = []
    attach_s = None
    if file is not None and not timed_attach:
        ids = [(await engine.attach(*file)).id]
    started = time.time()
    if file is not None and timed_attach:
        ids = [(await engine.attach(*file)).id]
        attach_s = time.time() - started
    sending = time.time()
    _user, assistant = await engine.send(None, TEXT, attachments=ids)
    returned = time.time()
    generation = engine.live(assistant.id)
    if generation is not None:
        await generation.wait()
    [record] = upstream.streams(since)
    return {
        "to_upstream_ms": (record["received_at"] - started) * 1000,
        "send_to_upstream_ms": (record["received_at"] - sending) * 1000,
        "send_returned_ms": (returned - sending) * 1000,
        "attach_ms": None if attach_s is None else attach_s * 1000,
        "body_bytes": record["body_bytes"],
        "image_parts": record["image_parts"],
    }


CASES = ("text", "photo_attached_before", "photo_attach_timed", "pdf_attached_before", "pdf_attach_timed")


async def measure_sends(upstream: UpstreamProcess, data_dir: Path, photo: Image.Image, pdf: bytes, sends: int,
                        cases: tuple[str, ...]) -> dict[str, Any]:  # fmt: skip
    """``sends`` runs of each of ``cases``, interleaved, after one warm-up run of each; per case the samples."""
    from chat.engine import Engine
    from chat.provider import Provider
    from chat.store import Store

    store = Store(f"sqlite:///{data_dir / 'parley.db'}")
    store.migrate()
    provider = Provider(upstream.base_url, "none")
    engine = Engine(store, provider, default_model=MODEL)
    variant = 0

    def file_for(case: str) -> tuple[bytes, str] | None:
        nonlocal variant
        variant += 1
        if case.startswith("photo"):
            return photo_bytes(photo, variant), "photo.jpg"
        if case.startswith("pdf"):
            return pdf_variant(pdf, variant), "report.pdf"
        return None

    samples: dict[str, list[dict[str, Any]]] = {case: [] for case in cases}
    try:
        for run in range(sends + 1):  # run 0 warms up (connection, imports, first writes)
            for case in cases:
                file = file_for(case)  # made before the clock starts
                figures = await _one_send(engine, upstream, file, case.endswith("timed"))
                if run:
                    samples[case].append(figures)
    finally:
        await engine.shutdown()
        await provider.close()
        store.close()
    return samples


def _median_of(samples: list[dict[str, Any]], key: str) -> float | None:
    values = [s[key] for s in samples if s.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


# -- the page -----------------------------------------------------------------------------------------------------


class PageBytes:
    """Bytes one page received, from DevTools protocol ``Network`` events (a CDP session of its own)."""

    def __init__(self, page: Any) -> None:
        self.requests: dict[str, dict[str, Any]] = {}  # request id -> url, type, bytes
        self.ws_frames = 0
        self.ws_bytes = 0
        self.last_event = time.monotonic()
        cdp = page.context.new_cdp_session(page)
        cdp.on("Network.requestWillBeSent", self._request)
        cdp.on("Network.responseReceived", self._response)
        cdp.on("Network.loadingFinished", self._finished)
        cdp.on("Network.loadingFailed", self._failed)
        cdp.on("Network.webSocketFrameReceived", self._frame)
        cdp.send("Network.enable")

    def _seen(self) -> None:
        self.last_event = time.monotonic()

    def _request(self, p: dict) -> None:
        self._seen()
        self.requests.setdefault(p["requestId"], {"url": p["request"]["url"], "type": p.get("type", "Other")})

    def _response(self, p: dict) -> None:
        self._seen()
        entry = self.requests.setdefault(p["requestId"], {"url": p["response"]["url"]})
        entry.update(type=p.get("type", entry.get("type", "Other")), status=p["response"].get("status"))

    def _finished(self, p: dict) -> None:
        self._seen()
        self.requests.setdefault(p["requestId"], {"url": "?", "type": "Other"})["bytes"] = int(p["encodedDataLength"])

    def _failed(self, p: dict) -> None:
        self._seen()
        self.requests.setdefault(p["requestId"], {"url": "?", "type": "Other"})["failed"] = p.get("errorText")

    def _frame(self, p: dict) -> None:
        self._seen()
        response = p["response"]
        data = response.get("payloadData", "")
        if response.get("opcode") == 2:  # binary frames come base64-encoded
            size = len(data) * 3 // 4 - data[-2:].count("=")
        else:
            size = len(data.encode())
        self.ws_frames += 1
        self.ws_bytes += size

    def totals(self) -> dict[str, Any]:
        """Bytes by kind: ``document`` (the page's HTML), ``assets`` (scripts, stylesheets, fonts, images other than
        attachments), ``attachments`` (under ``/api/attachments/``), ``other_http``, ``ws``; ``total``; and the
        attachment requests (url, status, bytes)."""
        out = {"document": 0, "assets": 0, "attachments": 0, "other_http": 0}
        listed = []
        for entry in self.requests.values():
            size = entry.get("bytes", 0)
            if "/api/attachments/" in entry["url"]:
                out["attachments"] += size
                listed.append({"url": entry["url"].split("//", 1)[-1].split("/", 1)[-1], "status": entry.get("status"),
                               "bytes": size})  # fmt: skip
            elif entry.get("type") == "Document":
                out["document"] += size
            elif entry.get("type") in ("Script", "Stylesheet", "Font", "Image"):
                out["assets"] += size
            else:
                out["other_http"] += size
        http = sum(out.values())
        return {**out, "http": http, "ws": self.ws_bytes, "ws_frames": self.ws_frames, "total": http + self.ws_bytes,
                "requests": len(self.requests), "attachment_requests": listed}  # fmt: skip


def load_page(browser: Any, url: str, timeout: float = 30.0) -> dict[str, Any]:
    """Open ``url`` in a fresh context; count its bytes until the answer shows, the network is idle and no event came
    for ``QUIET`` seconds (at most ``timeout`` seconds in all)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        counted = PageBytes(page)
        started = time.monotonic()
        page.goto(url, wait_until="load")
        page.get_by_text(ANSWER_END).first.wait_for(timeout=timeout * 1000)
        page.wait_for_load_state("networkidle", timeout=timeout * 1000)
        settled = True
        while time.monotonic() - counted.last_event < QUIET:
            if time.monotonic() - started > timeout:
                settled = False
                break
            page.wait_for_timeout(100)  # lets Playwright deliver the events that came meanwhile
        figures = counted.totals()
        figures["settled"] = settled
        figures["thumbnails_in_dom"] = page.locator("img[src*='/api/attachments/']").count()
        return figures
    finally:
        context.close()


def measure_page(upstream: UpstreamProcess, photo: bytes, loads: int) -> dict[str, Any]:
    """``app.py`` on the fake; the message with and without the photo, made over ``/api``; each page ``loads``
    times in a fresh context (order alternating); medians and every load's figures."""
    import httpx

    from tests.browser import chromium, free_port, serve

    pieces = [f"w{i} " for i in range(40)] + [ANSWER_END]
    upstream.script(pieces=pieces, rate=None)
    with tempfile.TemporaryDirectory(prefix="parley-bench-attachments-") as folder:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with serve(Path(folder), upstream, port), httpx.Client(base_url=base, timeout=60) as client:
            pages: dict[str, str] = {}
            sizes: dict[str, Any] = {}
            for label, with_image in (("without", False), ("with", True)):
                made = client.post("/api/conversations", json={})
                made.raise_for_status()
                conversation = made.json()["id"]
                ids = []
                if with_image:
                    uploaded = client.post("/api/attachments", files={"file": ("photo.jpg", photo, "image/jpeg")})
                    uploaded.raise_for_status()
                    ids = [uploaded.json()["id"]]
                    sizes["uploaded"] = len(photo)
                    sizes["stored"] = len(client.get(f"/api/attachments/{ids[0]}/content").content)
                    sizes["thumbnail"] = len(client.get(f"/api/attachments/{ids[0]}/thumbnail").content)
                body = {"content": TEXT, "attachments": ids}
                with client.stream("POST", f"/api/conversations/{conversation}/messages", json=body) as answer:
                    answer.raise_for_status()
                    for _ in answer.iter_bytes():
                        pass
                detail = client.get(f"/api/conversations/{conversation}").json()
                attached = sum(len(m.get("attachments") or []) for m in detail["messages"])
                assert attached == len(ids), detail
                pages[label] = f"{base}/c/{conversation}"
            with chromium() as browser:
                version = browser.version
                load_page(browser, pages["without"])  # warms the server (first page build, imports)
                figures: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
                for index in range(loads):
                    for label in ("without", "with") if index % 2 == 0 else ("with", "without"):
                        figures[label].append(load_page(browser, pages[label]))
    medians = {
        label: {key: statistics.median_low([f[key] for f in runs]) for key in runs[0]
                if isinstance(runs[0][key], int) and not isinstance(runs[0][key], bool)}
        for label, runs in figures.items()
    }  # fmt: skip
    thumbnail_requests = [r for f in figures["with"] for r in f["attachment_requests"]]
    return {"chromium": version, "image_sizes": sizes, "median": medians, "loads": figures,
            "thumbnail_requested": bool(thumbnail_requests), "settled": all(f["settled"] for r in figures.values()
                                                                           for f in r)}  # fmt: skip


# -- the run ------------------------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value is not None and base else "-"


def format_report(result: dict[str, Any]) -> str:
    """The figures as text tables."""
    lines: list[str] = []
    photo, pdf = result.get("photo"), result.get("pdf")
    if photo:
        given, made = photo["input"], photo["output"]
        lines.append(
            f"photo: {given['width']}x{given['height']} JPEG, {given['bytes'] / 1e6:.2f} MB, EXIF "
            f"{'with' if given['gps'] else 'without'} GPS -> prepare() median {_ms(photo['prepare_ms_median'])} ms "
            f"(n={len(photo['prepare_ms'])}, min {_ms(min(photo['prepare_ms']))}): {made['width']}x{made['height']} "
            f"{made['media_type']}, {made['bytes'] / 1e6:.2f} MB ({made['bytes'] / given['bytes']:.2f}x the input), "
            f"thumbnail {made['thumbnail_bytes'] / 1e3:.1f} kB, EXIF tags left: {made['exif_tags']}"
        )
    if pdf:
        lines.append(
            f"pdf: {pdf['input']['pages']} pages, {pdf['input']['bytes'] / 1e3:.0f} kB, ~{pdf['input']['words']:,} "
            f"words -> prepare() median {_ms(pdf['prepare_ms_median'])} ms (n={len(pdf['prepare_ms'])}, min "
            f"{_ms(min(pdf['prepare_ms']))}): {pdf['output']['chars']:,} characters ({pdf['output']['words']:,} "
            f"words) extracted"
        )
    sends = result.get("sends")
    if sends:
        base = sends["text"]
        lines += [
            "",
            f"engine.send -> whole request read by the upstream, ms (median of {result['config']['sends']}; the "
            "baseline is the same message without a file)",
            f"{'':<34} {'to upstream':>11} {'ratio':>7} {'send only':>10} {'attach':>8} {'send()':>8} "
            f"{'body bytes':>11} {'ratio':>8}",
        ]
        labels = {"text": "text only (baseline)", "photo_attached_before": "photo, attached before",
                  "photo_attach_timed": "photo, attach() included", "pdf_attached_before": "pdf, attached before",
                  "pdf_attach_timed": "pdf, attach() included"}  # fmt: skip
        for case, figures in sends.items():
            lines.append(
                f"{labels[case]:<34} {_ms(figures['to_upstream_ms']):>11} "
                f"{_ratio(figures['to_upstream_ms'], base['to_upstream_ms']):>7} "
                f"{_ms(figures['send_to_upstream_ms']):>10} {_ms(figures['attach_ms']):>8} "
                f"{_ms(figures['send_returned_ms']):>8} {figures['body_bytes']:>11,} "
                f"{_ratio(figures['body_bytes'], base['body_bytes']):>8}"
            )
        lines.append(
            "  (to upstream: from the first call, attach() when included; send only: from the send() call; "
            "send(): until send() returned)"
        )
    page = result.get("page")
    if page:
        without, with_ = page["median"]["without"], page["median"]["with"]
        lines += [
            "",
            f"page /c/<id> in a fresh context, bytes received (median of {len(page['loads']['with'])} loads; "
            f"Chromium {page['chromium']})",
            f"{'':<28} {'without image':>14} {'with image':>12} {'difference':>11} {'ratio':>7}",
        ]
        for key, label in (("document", "HTML document"), ("assets", "scripts, styles, fonts"),
                           ("attachments", "/api/attachments/*"), ("other_http", "other HTTP"), ("http", "HTTP total"),
                           ("ws", "WebSocket frames"), ("ws_frames", "  (frames)"), ("total", "total"),
                           ("requests", "HTTP requests")):  # fmt: skip
            a, b = without[key], with_[key]
            lines.append(f"{label:<28} {a:>14,} {b:>12,} {b - a:>+11,} {_ratio(b, a):>7}")
        requested = page["loads"]["with"][0]["attachment_requests"]
        listed = ", ".join(f"{r['url']} ({r['status']}, {r['bytes']:,} B)" for r in requested)
        lines.append(
            f"thumbnail request on the page with the image: {'yes: ' + listed if requested else 'none'}; "
            f"<img> of an attachment in the DOM: {page['loads']['with'][0]['thumbnails_in_dom']}"
        )
        sizes = page["image_sizes"]
        lines.append(
            f"the image: {sizes['uploaded']:,} B uploaded, {sizes['stored']:,} B stored (/content), "
            f"{sizes['thumbnail']:,} B thumbnail (/thumbnail)" + ("" if page["settled"] else "; NOT SETTLED")
        )
    return "\n".join(lines)


def run(parts: tuple[str, ...], quick: bool, prepare_runs: int, sends: int, loads: int) -> dict[str, Any]:
    """Measure ``parts``; the JSON-able result."""
    from chat.attachments import FileLimits

    result: dict[str, Any] = {
        "config": {"parts": list(parts), "quick": quick, "prepare_runs": prepare_runs, "sends": sends,
                   "page_loads": loads, "loop": loop_factory().__module__.split(".")[0],
                   "max_image_side": FileLimits().max_image_side},
    }  # fmt: skip
    print("making the photo and the PDF ...", file=sys.stderr, flush=True)
    photo = base_photo()
    first = photo_bytes(photo, 0)
    pdf = make_pdf()
    if "photo" in parts:
        times, prepared = time_prepare(first, "photo.jpg", prepare_runs)
        source = Image.open(io.BytesIO(first))
        output = Image.open(io.BytesIO(prepared.data))
        result["photo"] = {
            "input": {"width": source.width, "height": source.height, "bytes": len(first),
                      "gps": bool(source.getexif().get_ifd(IFD.GPSInfo))},
            "prepare_ms": [round(t * 1000, 2) for t in times],
            "prepare_ms_median": round(statistics.median(times) * 1000, 2),
            "output": {"width": prepared.width, "height": prepared.height, "media_type": prepared.media_type,
                       "bytes": len(prepared.data), "thumbnail_bytes": len(prepared.thumbnail or b""),
                       "exif_tags": len(output.getexif())},
        }  # fmt: skip
    if "pdf" in parts:
        times, prepared = time_prepare(pdf, "report.pdf", prepare_runs)
        text = prepared.text or ""
        result["pdf"] = {
            "input": {"pages": PDF_PAGES, "bytes": len(pdf), "words": PDF_PAGES * WORDS_PER_PAGE},
            "prepare_ms": [round(t * 1000, 2) for t in times],
            "prepare_ms_median": round(statistics.median(times) * 1000, 2),
            "output": {"chars": len(text), "words": len(text.split())},
        }
    cases = tuple(c for c in CASES if c == "text" or c.split("_", 1)[0] in parts)
    with UpstreamProcess((MODEL,), tokens=5, rate=None) as upstream:
        if len(cases) > 1:
            print(f"sends: {sends} runs of {', '.join(cases)} ...", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(prefix="parley-bench-attachments-") as folder:
                with asyncio.Runner(loop_factory=loop_factory()) as runner:
                    samples = runner.run(measure_sends(upstream, Path(folder), photo, pdf, sends, cases))
            keys = ("to_upstream_ms", "send_to_upstream_ms", "send_returned_ms", "attach_ms", "body_bytes",
                    "image_parts")  # fmt: skip
            result["sends"] = {case: {key: _median_of(runs, key) for key in keys} for case, runs in samples.items()}
            for figures in result["sends"].values():
                figures["body_bytes"] = int(figures["body_bytes"])
            result["send_samples"] = samples
        if "page" in parts:
            print(f"page: app.py, {loads} loads of each page ...", file=sys.stderr, flush=True)
            result["page"] = measure_page(upstream, photo_bytes(photo, 10_000), loads)
    machine = machine_info(result["page"]["chromium"] if "page" in result else "not used")
    result["machine"] = machine
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line: run, print the tables, save the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.attachments", description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)} (all)")
    parser.add_argument("--prepare-runs", type=int, default=7, help="timed prepare() calls per file (default 7)")
    parser.add_argument("--sends", type=int, default=9, help="timed sends per case (default 9)")
    parser.add_argument("--page-loads", type=int, default=3, help="loads of each page (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 prepare() calls, 2 sends, 1 page load")
    parser.add_argument("--json", type=Path, help="where to save the results (default bench/results/attachments-*)")
    args = parser.parse_args(argv)
    parts = tuple(p for p in PARTS if p in args.parts.split(","))
    if args.quick:
        args.prepare_runs, args.sends, args.page_loads = 2, 2, 1
    result = run(parts, args.quick, args.prepare_runs, args.sends, args.page_loads)
    print(format_report(result))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = args.json or RESULTS / f"attachments-{'quick-' if args.quick else ''}{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
