"""A try-on page in the browser: pick a person, clothes and a target pose, press Try on.

    python -m mgvton_jax.demo [--model MODEL_DIR] [--port 7860] [--examples DATA_DIR]

Serves one page on http://127.0.0.1:PORT (--host to listen elsewhere). The galleries come
from a data set directory in any layout the builder reads (--examples; default: with the
shipped VITON model (no --model) the shipped VITON examples, else a few synthetic people
written to a temporary folder, the demo model's own kind of data): people,
product images, and target poses drawn as stick figures. A person can also be uploaded: a
plain photo, whose parsing and pose the person analyzer finds (`mgvton_jax.analyze`; shown on
the page), or a photo with its parsing PNG and OpenPose JSON. The upload is checked
(`mgvton_jax.prep.checks`) and the checker's messages are shown on the page; an unusable
upload, or a photo without a person, is refused. The result is
shown at the photo's size beside the synthesized parsing, the warped clothes, the coarse result
and the composition mask.

Uploads go to a temporary folder removed at exit, request bodies are capped (--max-upload-mb),
and every error becomes a message on the page; the server keeps running.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import json
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

from mgvton_jax import analyze, visualize
from mgvton_jax.analyze import Analyzer
from mgvton_jax.data import layouts, readers
from mgvton_jax.data.readers import DataError
from mgvton_jax.data.synth import write_synthetic_mpv
from mgvton_jax.export import (
    SHIPPED_EXAMPLES,
    ModelError,
    describe,
    shipped_analyzer,
    shipped_model,
)
from mgvton_jax.prep import checks
from mgvton_jax.tryon import TryOn

GALLERY_SIZE = 8
THUMBNAIL_HEIGHT = 128
SYNTHETIC_PEOPLE = 4
PAGE = Path(__file__).with_name("demo_page.html")


def _data_url(picture: np.ndarray | Image.Image, height: int | None = None) -> str:
    image = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    if height and image.height != height:
        image = image.resize((max(1, round(image.width * height / image.height)), height),
                             Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@dataclass
class Person:
    photo: Path
    parsing: Path


@dataclass
class Pose:
    keypoints: Path
    photo_hw: tuple[int, int]


@dataclass
class Clothes:
    image: Path
    mask: Path | None


class Gallery:
    """The choices the page offers, by id: people (pN), clothes (cN), poses (kN); uploads
    are added as people (uN)."""

    def __init__(self, root: Path, size: int = GALLERY_SIZE):
        source = layouts.open_source(root)
        layout = source.layout
        self.people: dict[str, Person] = {}
        self.clothes: dict[str, Clothes] = {}
        self.poses: dict[str, Pose] = {}
        # One set per kind: a photo can be both a person and a pose (VITON's pose-fixed
        # pairs have the reference as the target).
        seen: dict[str, set[Path]] = {"people": set(), "poses": set(), "clothes": set()}
        for triplet in source.pair_list.triplets:
            try:
                photo = layout.find(layouts.PERSON, triplet.reference, triplet.split)
                if photo not in seen["people"] and len(self.people) < size:
                    seen["people"].add(photo)
                    self.people[f"p{len(self.people)}"] = Person(
                        photo, layout.find(layouts.PARSING, triplet.reference, triplet.split))
                target = layout.find(layouts.PERSON, triplet.target, triplet.split)
                if target not in seen["poses"] and len(self.poses) < size:
                    seen["poses"].add(target)
                    with Image.open(target) as image:
                        hw = (image.height, image.width)
                    self.poses[f"k{len(self.poses)}"] = Pose(
                        layout.find(layouts.KEYPOINTS, triplet.target, triplet.split), hw)
                image = layout.find(layouts.CLOTHES, triplet.clothes, triplet.split)
                if image not in seen["clothes"] and len(self.clothes) < size:
                    seen["clothes"].add(image)
                    self.clothes[f"c{len(self.clothes)}"] = Clothes(
                        image, layout.find(layouts.CLOTHES_MASK, triplet.clothes,
                                           triplet.split))
            except DataError:
                continue
        if not (self.people and self.clothes and self.poses):
            raise DataError(f"{root}: no complete triplet to show (people, clothes and poses)")

    def as_json(self) -> dict:
        def thumbnails(items, picture):
            return [{"id": key, "image": _data_url(picture(item), THUMBNAIL_HEIGHT)}
                    for key, item in items.items()]

        return {
            "people": thumbnails(self.people, lambda p: readers.read_rgb(p.photo)),
            "clothes": thumbnails(self.clothes, lambda c: readers.read_rgb(c.image)),
            "poses": thumbnails(self.poses, lambda k: visualize.stick_figure(
                readers.read_keypoints(k.keypoints).keypoints, k.photo_hw)),
        }


class RequestError(Exception):
    """A request the page made wrongly; the message is shown."""


def _decode(field: object, name: str) -> bytes:
    if not isinstance(field, str) or not field:
        raise RequestError(f"no {name} was uploaded")
    try:
        return base64.b64decode(field.split(",", 1)[-1], validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"the {name} upload is not base64 data") from None


class TryOnApp:
    """What the page asks for, without HTTP: the gallery, checking an upload, a try-on."""

    def __init__(self, tryon: TryOn, gallery: Gallery, upload_dir: Path):
        self.tryon, self.gallery, self.upload_dir = tryon, gallery, upload_dir
        self.lock = threading.Lock()
        self.gallery_json = gallery.as_json()

    def upload(self, body: dict) -> dict:
        """{photo[, parsing][, keypoints]}: base64 files -> {ok, id (if usable), problems,
        image, analysis (the analyzer's parsing and pose pictures, when it made either)}.
        What is not given is analysed from the photo."""
        with self.lock:
            folder = self.upload_dir / f"u{len(list(self.upload_dir.iterdir()))}"
            folder.mkdir()
        name = Path(str(body.get("photo_name") or "photo.jpg")).name
        suffix = Path(name).suffix.lower()
        suffix = suffix if suffix in (".png", ".jpg", ".jpeg") else ".jpg"
        files = {"photo": folder / f"photo{suffix}", "parsing": folder / "parsing.png",
                 "keypoints": folder / "keypoints.json"}
        files["photo"].write_bytes(_decode(body.get("photo"), "photo"))
        reply = {}
        given = [key for key in ("parsing", "keypoints") if body.get(key)]
        for key in given:
            files[key].write_bytes(_decode(body[key], key))
        if len(given) < 2:  # the analyzer makes what was not given
            photo = readers.read_rgb(files["photo"])
            with self.lock:
                try:
                    analysis = self.tryon.analyzer(photo, name)
                except analyze.NoPersonError as err:
                    return {"ok": False, "problems": [{"message": str(err), "fix": None,
                                                       "usable": False, "file": ""}]}
            if "parsing" not in given:
                analyze.write_parsing(files["parsing"], analysis.parsing)
            if "keypoints" not in given:
                analyze.write_keypoints(files["keypoints"], analysis.keypoints)
            parsing_picture, pose_picture = analyze.preview(photo, analysis)
            reply["analysis"] = {"parsing": _data_url(parsing_picture, THUMBNAIL_HEIGHT * 2),
                                 "pose": _data_url(pose_picture, THUMBNAIL_HEIGHT * 2)}
        problems = checks.check_person(files["photo"], files["parsing"], files["keypoints"])
        shown = [{"message": p.message, "fix": p.fix, "usable": p.usable,
                  "file": Path(p.file).name} for p in problems]
        if checks.unusable(problems):
            return {"ok": False, "problems": shown}
        key = folder.name
        self.gallery.people[key] = Person(files["photo"], files["parsing"])
        with Image.open(files["photo"]) as image:
            hw = (image.height, image.width)
        self.gallery.poses[f"k{key}"] = Pose(files["keypoints"], hw)
        return {**reply, "ok": True, "id": key, "problems": shown,
                "image": _data_url(readers.read_rgb(files["photo"]), THUMBNAIL_HEIGHT)}

    def try_on(self, body: dict) -> dict:
        """{person, clothes, pose} ids -> {image, intermediates, notes}."""
        try:
            person = self.gallery.people[body["person"]]
            clothes = self.gallery.clothes[body["clothes"]]
            pose = self.gallery.poses[body["pose"]]
        except (KeyError, TypeError):
            raise RequestError("choose a person, clothes and a target pose first") from None
        with self.lock:
            result = self.tryon(person=person.photo, person_parsing=person.parsing,
                                clothes=clothes.image, clothes_mask=clothes.mask,
                                pose=pose.keypoints, pose_size=pose.photo_hw)
        return {"image": _data_url(result.image),
                "width": int(result.image.shape[1]), "height": int(result.image.shape[0]),
                "intermediates": {k: _data_url(v) for k, v in result.intermediates.items()},
                "notes": result.notes}


def make_handler(app: TryOnApp, max_body: int) -> type[BaseHTTPRequestHandler]:
    """The HTTP handler of `app`: GET / and /api/gallery, POST /api/upload and /api/tryon."""
    page = PAGE.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, value: dict) -> None:
            self._send(status, json.dumps(value).encode(), "application/json")

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base's name)
            del format, args  # the page is quiet; errors are logged below

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            elif self.path == "/api/gallery":
                self._json(HTTPStatus.OK, app.gallery_json)
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            routes = {"/api/upload": app.upload, "/api/tryon": app.try_on}
            if self.path not in routes:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no action {self.path}"})
                return
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self._json(HTTPStatus.LENGTH_REQUIRED, {"error": "the request has no length"})
                return
            if int(length) > max_body:
                self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {
                    "error": f"the upload is {int(length) / 2**20:.1f} MB; the limit is "
                             f"{max_body / 2**20:.0f} MB"})
                self.close_connection = True
                return
            try:
                body = json.loads(self.rfile.read(int(length)))
                if not isinstance(body, dict):
                    raise RequestError("the request is not a JSON object")
                self._json(HTTPStatus.OK, routes[self.path](body))
            except (RequestError, DataError, json.JSONDecodeError, UnicodeDecodeError) as err:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(err)})
            except Exception as err:  # the server must outlive any one request
                print(f"error in {self.path}: {type(err).__name__}: {err}", file=sys.stderr)
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR,
                           {"error": f"internal error ({type(err).__name__}); see the log"})

    return Handler


def make_server(model: str | Path, examples: str | Path | None = None,
                host: str = "127.0.0.1", port: int = 7860, max_upload_mb: float = 16,
                analyzer: str | Path | None = None) -> tuple[ThreadingHTTPServer, Path]:
    """The page's server (not yet serving) and its temporary folder (uploads, synthetic
    examples), which the caller removes; analyzer: the person analyzer's directory (None:
    the shipped one). Raises ModelError or DataError (named files)."""
    tryon = TryOn.load(model, analyzer=Analyzer.load(analyzer))
    temporary = Path(tempfile.mkdtemp(prefix="mgvton_demo_"))
    try:
        if examples is None:
            examples = temporary / "examples"
            write_synthetic_mpv(examples, SYNTHETIC_PEOPLE, seed=0, progress=False)
        uploads = temporary / "uploads"
        uploads.mkdir()
        app = TryOnApp(tryon, Gallery(Path(examples)), uploads)
        server = ThreadingHTTPServer((host, port),
                                     make_handler(app, int(max_upload_mb * 2**20)))
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    server.daemon_threads = True
    return server, temporary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mgvton_jax.demo",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (mgvton_jax.export; default: the "
                        "shipped VITON model, pretrained/viton)")
    parser.add_argument("--examples", help="data set directory for the galleries (default: "
                        "with the shipped model its VITON examples, else a few synthetic "
                        "people)")
    parser.add_argument("--analyzer", help="person analyzer for plain-photo uploads (default: "
                        "the shipped one, pretrained/analyzer)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max-upload-mb", type=float, default=16)
    args = parser.parse_args(argv)
    try:
        model = args.model or shipped_model()
        print(describe(model), flush=True)
        print(describe(args.analyzer or shipped_analyzer(), "analyzer"), flush=True)
        examples = args.examples or (SHIPPED_EXAMPLES if args.model is None else None)
        server, temporary = make_server(model, examples, args.host, args.port,
                                        args.max_upload_mb, args.analyzer)
    except (ModelError, DataError, OSError) as err:
        raise SystemExit(f"error: {err}") from None
    host, port = server.server_address[:2]
    print(f"try-on page on http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    main()
