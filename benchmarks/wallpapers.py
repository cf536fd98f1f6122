"""Face-free photos and artwork from Debian's wallpaper packages: a wider test of a face detector's restraint.

    apt-get download gnome-backgrounds plasma-workspace-wallpapers mate-backgrounds ukui-wallpapers \
        lomiri-wallpapers lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 sway-backgrounds
    python benchmarks/wallpapers.py *.deb --out data/wallpapers

scikit-image's and matplotlib's sample pictures are few, and a detector can be clean on all of them and
still see faces in everyday pictures (dots, tiles, leaves, insects). These packages hold 109 designs:
nature photos (flowers, leaves, insects, dunes, water, mountains), rooms and still lifes, night skies
and abstract art. The 101 written have no face in them (NOT_FACE_FREE names the 8 left out and why).
Two packages choose the detector's thresholds (photo_scenes.VALIDATION_WALLPAPERS), the others train
the face check (facedata.face_check_train.TRAINING_WALLPAPERS). Each is written once, as a gray PNG
whose shorter side is 480 px, under a folder named for its package, with an index.csv (package, name,
source path in the package, size, sha256 of the source file). The pictures are the packages' own (their
licences are in each package's copyright file, /usr/share/doc/<package>/copyright): they are read where
a user made them, never shipped. benchmarks/photo_scenes.wallpaper_pictures reads the folder.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from facedata.atomic import atomic_file
from facedata.scenes import gray

SHORT_SIDE = 480  # px: each picture's shorter side as written
MIN_SIDE = 400  # px: smaller files (icons, previews) are not wallpapers
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# designs left out, each for what it shows (a face-free set must hold no face, drawn or animal)
NOT_FACE_FREE = {"Autumn": "a girl", "FlyingKonqui": "a cartoon dragon's face", "SafeLanding": "small cartoon figures",
                 "mate-abstract-Elephants": "elephants' faces", "friends_by_Aitzol_Berasategi": "two dogs",
                 "firstgeneration": "a dragon mask", "the-mouse": "a mouse's face", "goldfish": "a fish's eye"}


def design_key(relative: str) -> str:
    """One key per design: a wallpaper's sizes (`5120x2880.png`, `Elephants_3840x2160.jpg`) share it."""
    stem = relative.rsplit(".", 1)[0]
    return re.sub(r"[_-]?\d{3,5}x\d{3,5}(_portrait)?$", "", re.sub(r"/\d{3,5}x\d{3,5}$", "/", stem), flags=re.IGNORECASE)


def design_name(key: str) -> str:
    """A file name for a design key: `usr/share/wallpapers/Kay/contents/images_dark/` → `Kay-dark`."""
    parts = [p for p in key.split("/") if p and p not in ("usr", "share", "wallpapers", "backgrounds", "contents", "images")]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(p.replace("images_", "") for p in parts))


def package_designs(root: Path) -> dict[str, Path]:
    """{design key: its largest landscape file (else its largest)} among an unpacked package's pictures."""
    chosen: dict[str, tuple[tuple, Path]] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in SUFFIXES or not path.is_file():
            continue
        try:
            with Image.open(path) as image:
                width, height = image.size
        except OSError:
            continue
        if min(width, height) < MIN_SIDE:
            continue
        rank = (width >= height, width * height)
        key = design_key(str(path.relative_to(root)))
        if key not in chosen or rank > chosen[key][0]:
            chosen[key] = (rank, path)
    return {key: path for key, (_, path) in chosen.items()}


def write_package(deb: Path, out: Path) -> list[dict]:
    """Unpack one .deb and write its designs as gray PNGs under out/<package>; their index rows."""
    package = deb.name.split("_", 1)[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        for key, path in package_designs(Path(tmp)).items():
            name = design_name(key)
            if name in NOT_FACE_FREE:
                continue
            with Image.open(path) as image:
                picture = image.convert("RGB")
            scale = SHORT_SIDE / min(picture.size)
            picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.Resampling.LANCZOS)
            target = out / package / f"{name}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(target) as tmp_file:
                Image.fromarray(gray(np.asarray(picture))).save(tmp_file, format="PNG")
            rows.append({"package": package, "name": name, "source": str(path.relative_to(tmp)),
                         "width": picture.width, "height": picture.height,
                         "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("debs", type=Path, nargs="+", help="the packages' .deb files (apt-get download)")
    parser.add_argument("--out", type=Path, default=Path("data/wallpapers"))
    args = parser.parse_args(argv)
    for deb in args.debs:
        if not deb.is_file() or deb.suffix != ".deb":
            parser.error(f"{deb}: not a .deb file")
    rows = [row for deb in args.debs for row in write_package(deb, args.out)]
    with atomic_file(args.out / "index.csv") as tmp:
        pd.DataFrame(rows).sort_values(["package", "name"]).to_csv(tmp, index=False)
    print(pd.DataFrame(rows).groupby("package").size().to_string())


if __name__ == "__main__":
    main()
