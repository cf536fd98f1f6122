"""Train the face check (facedata.face_check) on BlazeFace's own boxes: faces against face-like textures.

    python -m facedata.face_check_train --wallpapers data/wallpapers --real-faces ../shared/data/cmu_faces \
        --split-from runs/cmu   # the shipped facedata/models/face_check.safetensors (+ .json)
    python -m facedata.face_check_train --accessories --out F.safetensors   # procedural pictures and bare heads only

A maintainer's step, run once; the weights ship in the package. Its examples are what the check will
be asked about: the boxes BlazeFace reports at a low threshold. Faces are SynthPIE renders (this
package's, every yaw from −90° to +90°, bare and wearing glasses, sunglasses or hats: --accessories;
raised: --pitches) and the 100 faces of scikit-image's LFW subset, pasted into procedural backgrounds
(as a square or blended in through a soft ellipse) both at photo size and as small webcam frames (a
64×60 frame, a face 18–36 px wide); a box on the pasted face is a face, any other box is not. Textures
are procedural pictures (fractal noise, shapes, waves, soft blobs, dots, text, LFW's non-face patches,
some with a square of another texture pasted in) and everything BlazeFace reports in them. Real photos
and artwork without a face come, with --wallpapers, from Debian's wallpaper packages
(TRAINING_WALLPAPERS, a folder benchmarks/wallpapers.py writes): crops of them at photo and webcam
size, half with a face pasted in, so the check sees real clutter around faces and the face-like things
real pictures hold (leaves, dots, tiles); the shipped check was trained with them (docs/data.md weighs
it against the check trained on procedural pictures alone). None of these is a picture the detector is
chosen or measured on (benchmarks/choose_detector.py, benchmarks/detect_faces.py).

With --real-faces the cmu_faces photos of a recipe's train people join the faces: real webcam faces,
turned, raised and in sunglasses, each where BlazeFace and MTCNN's ONet agree on it (real_face_squares).
Such a check has seen those people, so its thresholds are chosen on the val people's photos
(choose_detector.py --cmu-people val). The shipped check learned them: alone it found more of the val
people's webcam faces and fewer of KDEF's studio faces, blended with ONet (DetectConfig.check_onet_share)
more webcam faces and as many studio faces as the check before (docs/data.md).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from facedata.face_check import WEIGHTS, FaceCheck, standardize, window_crops_of
from facedata.blazeface import _iou, detect
from facedata.detect import found_at
from facedata.errors import DataError
from facedata.synth.presets import ACCESSORIES, synth_config

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class CheckTrainConfig:
    """How the check's examples are made and how it is trained."""

    identities: int = 48  # SynthPIE people rendered (varied preset, 13 yaws)
    scenes: int = 2400  # pictures with one pasted face (half photos, half webcam frames)
    textures: int = 900  # face-free procedural pictures
    photos: int = 1200  # crops of the training wallpapers, half with a pasted face (none without --wallpapers)
    # SynthPIE accessories also rendered (every yaw, neutral expression), so that a face in sunglasses, glasses or a
    # hat is a face to the check too (without them it let in 5 % fewer cmu_faces validation photos, most of them
    # turned faces in sunglasses: docs/data.md); () renders bare heads only
    accessories: tuple[str, ...] = ("glasses", "tinted_glasses", "sunglasses", "cap", "brimmed_hat", "beanie")
    # SynthPIE heads also raised by these degrees (every yaw, bare and in sunglasses, neutral): a face looking up
    pitches: tuple[float, ...] = ()
    # real webcam faces (--real-faces: cmu_faces photos of a recipe's train people): each photo read this many times,
    # each time at another size, contrast and blur; its face is the box BlazeFace (>= real_blaze) and MTCNN's ONet
    # (>= real_onet, trained on real faces) agree on, or where they agree on none (most turned-up faces and faces in
    # sunglasses), the median of that person's agreed boxes in the same pose (real_face_squares)
    real_repeats: int = 3
    real_blaze: float = 0.5
    real_onet: float = 0.9
    threshold: float = 0.2  # BlazeFace boxes at or above this score become examples
    jitter: int = 2  # crops per box, each moved and scaled a little
    epochs: int = 14
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0


# benchmarks/wallpapers.py's packages the check learns from; the others choose the detector's thresholds
# (benchmarks/photo_scenes.VALIDATION_WALLPAPERS)
TRAINING_WALLPAPERS = ("mate-backgrounds", "ukui-wallpapers", "lomiri-wallpapers", "lomiri-wallpapers-16.04",
                       "lomiri-wallpapers-20.04", "sway-backgrounds")


def wallpapers_of(folder: Path, packages: tuple[str, ...]) -> list[tuple[str, np.ndarray]]:
    """("package/name", (H, W) uint8) for the pictures of `packages` in a folder benchmarks/wallpapers.py wrote."""
    import pandas as pd

    index_file = Path(folder) / "index.csv"
    if not index_file.is_file():
        raise SystemExit(f"{folder}: no index.csv (make the folder with benchmarks/wallpapers.py)")
    index = pd.read_csv(index_file)
    index = index[index["package"].isin(packages)]
    if index.empty:
        raise SystemExit(f"{folder}: none of the packages {', '.join(packages)} in index.csv")
    return [(f"{row.package}/{row.name}", np.asarray(Image.open(Path(folder) / row.package / f"{row.name}.png").convert("L")))
            for row in index.itertuples()]


def training_wallpapers(folder: Path) -> list[np.ndarray]:
    """The (H, W) uint8 pictures of TRAINING_WALLPAPERS in a folder benchmarks/wallpapers.py wrote."""
    return [picture for _, picture in wallpapers_of(folder, TRAINING_WALLPAPERS)]


def wallpaper_crop(rng: np.random.Generator, hw: tuple[int, int], wallpapers: list[np.ndarray]) -> np.ndarray:
    """A (H, W) crop of a random wallpaper seen at a random scale (a whole scene for a webcam frame, a part of
    one for a photo), at a random contrast, sometimes mirrored."""
    picture = wallpapers[int(rng.integers(len(wallpapers)))]
    h, w = hw
    scale = max(h / picture.shape[0], w / picture.shape[1]) * rng.uniform(1.0, 3.0)  # the whole width to a third of it
    size = (max(w, round(picture.shape[1] * scale)), max(h, round(picture.shape[0] * scale)))
    resized = np.asarray(Image.fromarray(picture).resize(size, Image.Resampling.BILINEAR), dtype=np.float64)
    top, left = int(rng.integers(0, size[1] - h + 1)), int(rng.integers(0, size[0] - w + 1))
    crop = resized[top : top + h, left : left + w]
    crop = crop[:, ::-1] if rng.random() < 0.5 else crop
    return to_uint8(crop, rng)


def fractal(rng: np.random.Generator, hw: tuple[int, int], betas: tuple[float, float] = (0.8, 3.2)) -> np.ndarray:
    """1/f^beta noise, beta drawn from `betas`: clouds (beta 3) to grain (beta 1)."""
    fy, fx = np.fft.fftfreq(hw[0])[:, None], np.fft.fftfreq(hw[1])[None]
    amplitude = 1 / np.maximum(np.hypot(fx, fy), 1 / max(hw)) ** rng.uniform(*betas)
    return np.real(np.fft.ifft2(amplitude * np.exp(2j * np.pi * rng.random(hw))))


def shapes(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    """Random ellipses, rectangles and polygons of random grays."""
    h, w = hw
    picture = Image.new("L", (w, h), int(rng.integers(256)))
    draw = ImageDraw.Draw(picture)
    for _ in range(int(rng.integers(5, 80))):
        x, y, s = rng.uniform(-0.1, 1) * w, rng.uniform(-0.1, 1) * h, rng.uniform(0.02, 0.4) * max(h, w)
        box = [x, y, x + s, y + s * rng.uniform(0.3, 3)]
        kind = int(rng.integers(3))
        if kind == 2:
            draw.polygon([tuple(p) for p in rng.uniform([x, y], [x + s, y + s], (int(rng.integers(3, 7)), 2))],
                         fill=int(rng.integers(256)))
        else:
            (draw.ellipse if kind == 0 else draw.rectangle)(box, fill=int(rng.integers(256)))
    return np.asarray(picture, dtype=np.float64)


def waves(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    """A few plane waves and rings."""
    yy, xx = np.mgrid[: hw[0], : hw[1]].astype(np.float64)
    out = np.zeros(hw)
    for _ in range(int(rng.integers(1, 4))):
        period = rng.uniform(4, 60)
        if rng.random() < 0.5:
            angle = rng.uniform(0, np.pi)
            out += np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
        else:
            cx, cy = rng.uniform(0, hw[1]), rng.uniform(0, hw[0])
            out += np.sin(np.hypot(xx - cx, yy - cy) * 2 * np.pi / period)
    return out


def blobs(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    """Soft-edged ellipses, many or few, light on dark or dark on light."""
    h, w = hw
    picture = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(picture)
    size = rng.uniform(0.01, 0.15) * max(h, w)
    for _ in range(int(rng.integers(3, 150))):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = size * rng.uniform(0.5, 1.5, 2)
        draw.ellipse([x - rx, y - ry, x + rx, y + ry], fill=int(rng.integers(60, 256)))
    picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 4)))
    out = np.asarray(picture, dtype=np.float64)
    return out if rng.random() < 0.5 else -out


def dots(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    """Points of random brightness, blurred: star fields, grain, speckle."""
    out = np.zeros(hw)
    count = int(rng.integers(20, 3000))
    out[rng.integers(0, hw[0], count), rng.integers(0, hw[1], count)] = rng.pareto(1.5, count)
    picture = Image.fromarray(np.clip(255 * out / max(out.max(), 1e-9), 0, 255).astype(np.uint8))
    return np.asarray(picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 3))), dtype=np.float64)


def text(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    """Lines of random characters in PIL's bundled font, at one size."""
    from PIL import ImageFont

    h, w = hw
    picture = Image.new("L", (w, h), int(rng.integers(128, 256)))
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=float(rng.uniform(8, 48)))
    letters = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:()-"))
    y = 0.0
    while y < h:
        draw.text((rng.uniform(-20, 10), y), "".join(rng.choice(letters, 60)), fill=int(rng.integers(0, 100)), font=font)
        y += font.size * rng.uniform(1.1, 1.8)
    return np.asarray(picture, dtype=np.float64)


FAMILIES = (fractal, shapes, waves, blobs, dots, text)


def to_uint8(picture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stretched to a random range of grays, with a little sensor noise."""
    low, high = np.percentile(picture, [1, 99])
    scaled = (picture - low) / max(high - low, 1e-9)
    lo = rng.uniform(0, 100)
    out = lo + scaled * rng.uniform(60, 255 - lo) + rng.normal(0, rng.uniform(0, 6), picture.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def texture(rng: np.random.Generator, hw: tuple[int, int], lfw_patches: np.ndarray) -> np.ndarray:
    """A face-free picture: one family, or two blended, or LFW's non-face patches tiled and enlarged."""
    if rng.random() < 0.1:
        h, w = hw
        tiles = lfw_patches[rng.integers(0, len(lfw_patches), 4)]
        mosaic = np.block([[tiles[0], tiles[1]], [tiles[2], tiles[3]]])
        return np.asarray(Image.fromarray(mosaic).resize((w, h), Image.Resampling.BICUBIC))
    picture = FAMILIES[int(rng.integers(len(FAMILIES)))](rng, hw)
    if rng.random() < 0.3:
        other = FAMILIES[int(rng.integers(len(FAMILIES)))](rng, hw)
        picture = (picture - picture.mean()) / max(picture.std(), 1e-9) + rng.uniform(0.2, 1) * (other - other.mean()) / max(other.std(), 1e-9)
    return to_uint8(picture, rng)


def picture_size(rng: np.random.Generator, webcam: bool) -> tuple[tuple[int, int], int]:
    """(H, W) and the min_face BlazeFace searches it with: a 64×60 webcam frame, or a photo."""
    if webcam:
        return (60, 64), 16
    return (int(rng.integers(180, 400)), int(rng.integers(200, 480))), 32


def rendered_faces(config: CheckTrainConfig) -> np.ndarray:
    """(n, 64, 64) uint8 SynthPIE renders (varied preset), every yaw from −90° to +90° in steps of 15°: bare heads
    with the preset's expressions, then (config.accessories) the same people wearing each accessory, then
    (config.pitches) raised by each pitch, bare and in sunglasses."""
    from facedata.synth.dataset import render_faceset
    from facedata.synth.presets import synth_config

    def render(**overrides) -> np.ndarray:
        synth = synth_config("varied", identities=config.identities, train_identities=config.identities,
                             val_identities=0, image_size=64, poses=tuple(range(-90, 91, 15)),
                             illumination_subset=("00", "07", "17"), seed=config.seed + 11, **overrides)
        return np.asarray(render_faceset(synth, progress=True).images)

    faces = [render()]
    if config.accessories:
        faces.append(render(accessories=tuple(config.accessories), expressions=("neutral",)))
    for pitch in config.pitches:
        faces.append(render(pitch=float(pitch), accessories=("none", "sunglasses"), expressions=("neutral",)))
    return np.concatenate(faces)


def lfw_subset() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's LFW subset as uint8: (100, 25, 25) faces, (100, 25, 25) non-face patches."""
    import skimage.data

    pictures = np.clip(np.round(255 * skimage.data.lfw_subset()), 0, 255).astype(np.uint8)
    return pictures[:100], pictures[100:]


def paste(face: np.ndarray, picture: np.ndarray, rng: np.random.Generator, webcam: bool) -> tuple[np.ndarray, tuple]:
    """`face` resized and pasted into a copy of `picture`, as a square or blended in through a soft ellipse
    (so that a square's edge says nothing); the pasted square (left, top, right, bottom)."""
    h, w = picture.shape
    side = int(rng.integers(18, 37)) if webcam else int(rng.integers(40, min(h, w, 160) + 1))
    resized = np.asarray(Image.fromarray(face).resize((side, side), Image.Resampling.BICUBIC), dtype=np.float64)
    top = int(rng.integers(0, max(1, h - side // 2))) - side // 4
    left = int(rng.integers(0, max(1, w - side // 2))) - side // 4
    top, left = int(np.clip(top, 0, h - side)), int(np.clip(left, 0, w - side))
    out = picture.astype(np.float64)
    alpha = soft_ellipse(side, rng) if rng.random() < 0.6 else np.ones((side, side))
    region = out[top : top + side, left : left + side]
    out[top : top + side, left : left + side] = alpha * resized + (1 - alpha) * region
    out = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:  # a blurred or noisy capture
        out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2))))
    return out, (float(left), float(top), float(left + side), float(top + side))


def soft_ellipse(side: int, rng: np.random.Generator) -> np.ndarray:
    """(side, side) weights: 1 inside an upright ellipse about the head, fading to 0 over a few pixels."""
    yy, xx = (np.mgrid[:side, :side] + 0.5) / side - 0.5
    rx, ry = rng.uniform(0.3, 0.5), rng.uniform(0.4, 0.5)
    distance = np.hypot(xx / rx, (yy + rng.uniform(-0.03, 0.03)) / ry)
    return np.clip((1 - distance) / rng.uniform(0.05, 0.3) + 0.5, 0, 1)


def square_patch(picture: np.ndarray, rng: np.random.Generator, patches: np.ndarray) -> np.ndarray:
    """A square of another texture (or an LFW non-face patch) pasted into `picture`: a square edge is no face."""
    h, w = picture.shape
    side = int(rng.integers(16, max(17, min(h, w) // 2)))
    source = patches[int(rng.integers(len(patches)))] if rng.random() < 0.5 else texture(rng, (side, side), patches)
    patch = np.asarray(Image.fromarray(source).resize((side, side), Image.Resampling.BICUBIC))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    out = picture.copy()
    out[top : top + side, left : left + side] = patch
    return out


def jittered_boxes(boxes: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """(len(boxes) · count, 4) boxes, each moved by N(0, 0.06) box widths and scaled by exp(N(0, 0.1))."""
    moved = []
    for box in boxes:
        width = box[2] - box[0]
        for _ in range(count):
            cx, cy = (box[0] + box[2]) / 2 + rng.normal(0, 0.06) * width, (box[1] + box[3]) / 2 + rng.normal(0, 0.06) * width
            half = width * np.exp(rng.normal(0, 0.1)) / 2
            moved.append([cx - half, cy - half, cx + half, cy + half])
    return np.asarray(moved, dtype=np.float64).reshape(-1, 4)


def jittered_crops(image: np.ndarray, boxes: np.ndarray, count: int, rng: np.random.Generator,
                   crops_of: Callable[[np.ndarray, np.ndarray], torch.Tensor] = window_crops_of) -> torch.Tensor:
    """crops_of the jittered_boxes: `count` crops per box, each box moved and scaled a little."""
    return crops_of(image, jittered_boxes(np.asarray(boxes), count, rng))


def people_splits(split_from: Path) -> dict:
    """{identity: split} of the FaceSet at `split_from` (its faces.parquet)."""
    import pandas as pd

    from facedata.faceset import FACES_FILE

    path = split_from / FACES_FILE
    if not path.is_file():
        raise DataError(f"{path}: not found (--split-from names a FaceSet imported from cmu_faces)")
    faces = pd.read_parquet(path, columns=["identity", "split"]).drop_duplicates("identity")
    return dict(zip(faces["identity"], faces["split"]))


def real_photos(data: Path, split_from: Path, split: str = "train") -> tuple[np.ndarray, pd.DataFrame]:
    """cmu_faces photos ((n, H, W) uint8 and their labels.csv rows) of the people in `split` of the FaceSet at
    `split_from` (a FaceSet imported from `data`, whose faces.parquet says each person's split)."""
    import pandas as pd

    from facedata.faceset import FACES_FILE

    for path in (data / "images.npy", data / "labels.csv", split_from / FACES_FILE):
        if not path.is_file():
            raise DataError(f"{path}: not found (--real-faces names cmu_faces' folder, --split-from a FaceSet of it)")
    images = np.load(data / "images.npy")
    labels = pd.read_csv(data / "labels.csv").iloc[: len(images)]
    people = {person for person, of in people_splits(split_from).items() if of == split}
    if not people:
        raise DataError(f"{split_from / FACES_FILE}: no {split} people")
    rows = np.flatnonzero(labels["identity"].isin(people).to_numpy())
    if not len(rows):
        raise DataError(f"{data / 'labels.csv'}: none of the {split} people of {split_from}")
    return images[rows], labels.iloc[rows].reset_index(drop=True)


def real_face_squares(images: np.ndarray, labels: pd.DataFrame, config: CheckTrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4) a face box per photo and (n,) whether two real-face judges agreed on it there: the BlazeFace box
    (score >= real_blaze) ONet finds most likely a face, if at least real_onet; elsewhere the median agreed box of
    the same person in the same pose (webcam frames of one sitting: the head stays about where it was), else of
    the same person. Neither judge is the face check, so retraining the check leaves these boxes as they are."""
    from facedata.onet import onet_probability

    boxes = np.full((len(images), 4), np.nan)
    for i, image in enumerate(tqdm(images, desc="face check: real faces", unit="photo")):
        found = detect(image, smallest_face=16, threshold=config.real_blaze)
        if found:
            candidates = np.array([f.box for f in found]).reshape(-1, 4)
            sure = onet_probability(image, candidates)
            if sure.max() >= config.real_onet:
                boxes[i] = candidates[int(np.argmax(sure))]
    agreed = ~np.isnan(boxes[:, 0])
    for i in np.flatnonzero(~agreed):
        for same in (["identity", "pose"], ["identity"]):
            peers = agreed & (labels[same] == labels.loc[i, same]).all(axis=1).to_numpy()
            if peers.any():
                boxes[i] = np.median(boxes[peers], axis=0)
                break
    keep = ~np.isnan(boxes[:, 0])
    if not keep.all():
        raise DataError(f"no face box for {int((~keep).sum())} real photos: none of their people's photos has an agreed box")
    return boxes, agreed


def augmented(image: np.ndarray, box: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The photo at another size (0.8-2.5×), contrast and gamma, sometimes blurred or mirrored; its box moved along."""
    h, w = image.shape
    scale = rng.uniform(0.8, 2.5)
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    out = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR), dtype=np.float64) / 255
    out = np.clip((out ** rng.uniform(0.6, 1.6) - 0.5) * rng.uniform(0.6, 1.4) + 0.5 + rng.uniform(-0.15, 0.15), 0, 1)
    box = np.asarray(box, dtype=np.float64) * np.array([size[0] / w, size[1] / h] * 2)
    if rng.random() < 0.5:
        out = out[:, ::-1]
        box = np.array([size[0] - box[2], box[1], size[0] - box[0], box[3]])
    out = np.ascontiguousarray(np.round(255 * out).astype(np.uint8))
    if rng.random() < 0.3:
        out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2))))
    return out, box


def examples(config: CheckTrainConfig, wallpapers: list[np.ndarray] | None = None,
             real: tuple[np.ndarray, pd.DataFrame] | None = None,
             crops_of: Callable[[np.ndarray, np.ndarray], torch.Tensor] = window_crops_of,
             ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(crops (n, 1, 32, 32) in [−1, 1], labels (n,) 1 = face, group (n,) of the picture each came from); `real`:
    real_photos() whose faces join the examples (real_face_squares, read config.real_repeats times). `crops_of`
    reads the boxes another way (facedata.onet_tune: ONet's 48×48 squares); the boxes are the same for a seed."""
    rng = np.random.default_rng(config.seed)
    photos = config.photos if wallpapers else 0
    faces, patches = lfw_subset()
    rendered = rendered_faces(config)
    crops, labels, groups = [], [], []

    def add(image, boxes, label, group):
        if len(boxes):
            crops.append(jittered_crops(image, np.asarray(boxes), config.jitter, rng, crops_of))
            labels.append(np.full(len(boxes) * config.jitter, label, np.float32))
            groups.append(np.full(len(boxes) * config.jitter, group))

    procedural = config.scenes + config.textures
    for i in tqdm(range(procedural + photos), desc="face check: examples", unit="picture"):
        webcam = rng.random() < 0.5
        hw, min_face = picture_size(rng, webcam)
        if i < procedural:
            picture = texture(rng, hw, patches)
            if rng.random() < 0.4:
                picture = square_patch(picture, rng, patches)
        else:
            picture = wallpaper_crop(rng, hw, wallpapers)
        truth = None
        if i < config.scenes or procedural <= i < procedural + photos // 2:
            face = faces[int(rng.integers(len(faces)))] if rng.random() < 0.25 else rendered[int(rng.integers(len(rendered)))]
            face = face[:, ::-1] if rng.random() < 0.5 else face
            picture, truth = paste(np.ascontiguousarray(face), picture, rng, webcam)
        found = detect(picture, smallest_face=min_face, threshold=config.threshold)
        boxes = np.array([f.box for f in found]).reshape(-1, 4)
        face_rows = np.array([truth is not None and found_at(b, truth) for b in boxes], bool)
        add(picture, boxes[face_rows], 1.0, i)
        add(picture, boxes[~face_rows], 0.0, i)
        if truth is not None and not face_rows.any():  # the face BlazeFace missed at this threshold: its square
            add(picture, np.array([truth]), 1.0, i)
    if real is not None:
        images, rows = real
        squares, _ = real_face_squares(images, rows, config)
        first = procedural + photos
        for i in tqdm(range(config.real_repeats * len(images)), desc="face check: real examples", unit="photo"):
            photo, face = augmented(images[i % len(images)], squares[i % len(images)], rng)
            found = detect(photo, smallest_face=16, threshold=config.threshold)
            boxes = np.array([f.box for f in found]).reshape(-1, 4)
            side = 1.25 * (face[2] - face[0])  # the face's square, a little wider than BlazeFace's box
            cx, cy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
            square = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
            on_face = np.array([found_at(b, square) for b in boxes], bool)
            apart = _iou(np.array(square), boxes) == 0
            group = first + i % len(images)  # every reading of a photo in one group: held out together
            add(photo, boxes[on_face], 1.0, group)
            add(photo, boxes[apart & ~on_face], 0.0, group)  # boxes half on the face say nothing either way
            if not on_face.any():
                add(photo, face[None], 1.0, group)
    return torch.cat(crops), torch.from_numpy(np.concatenate(labels)), np.concatenate(groups)


def train(config: CheckTrainConfig, crops: torch.Tensor, labels: torch.Tensor, groups: np.ndarray) -> tuple[FaceCheck, dict]:
    """The check trained on 90 % of the pictures; the rest say how well it separates (AUC, error at 0.5)."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed + 1)
    held = np.isin(groups, rng.permutation(np.unique(groups))[: len(np.unique(groups)) // 10])
    x, y = standardize(crops), labels
    fit, held_out = torch.from_numpy(np.flatnonzero(~held)), torch.from_numpy(np.flatnonzero(held))
    model = FaceCheck()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    steps = config.epochs * ((len(fit) + config.batch_size - 1) // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=steps)
    positive_weight = torch.tensor(float((y[fit] == 0).sum() / max((y[fit] == 1).sum(), 1)))
    for _ in tqdm(range(config.epochs), desc="face check: training", unit="epoch"):
        model.train()
        for batch in fit[torch.randperm(len(fit))].split(config.batch_size):
            xb = x[batch]
            flip = torch.rand(len(batch)) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            loss = F.binary_cross_entropy_with_logits(model(xb), y[batch], pos_weight=positive_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.inference_mode():
        scores = torch.sigmoid(model(x[held_out])).numpy()
    truth = y[held_out].numpy()
    from sklearn.metrics import roc_auc_score

    return model, {"examples": int(len(y)), "faces": int((y == 1).sum()), "held_out": int(len(held_out)),
                   "held_out_auc": float(roc_auc_score(truth, scores)),
                   "held_out_error_at_half": float(((scores >= 0.5) != (truth == 1)).mean())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS, help="safetensors file to write (a .json record beside it)")
    parser.add_argument("--seed", type=int, default=CheckTrainConfig.seed)
    parser.add_argument("--epochs", type=int, default=CheckTrainConfig.epochs)
    parser.add_argument("--wallpapers", type=Path, default=None,
                        help="a folder benchmarks/wallpapers.py wrote: its TRAINING_WALLPAPERS become real backgrounds "
                             "and real face-free pictures (without it, procedural pictures only)")
    parser.add_argument("--accessories", nargs="*", default=list(CheckTrainConfig.accessories), metavar="ACCESSORY",
                        help=f"SynthPIE accessories the rendered faces also wear (of {', '.join(ACCESSORIES[1:])}; "
                             "none given: bare heads only)")
    parser.add_argument("--pitches", nargs="*", type=float, default=list(CheckTrainConfig.pitches), metavar="DEGREES",
                        help="the rendered heads also raised by these degrees, bare and in sunglasses")
    parser.add_argument("--real-faces", type=Path, default=None,
                        help="cmu_faces' folder (images.npy, labels.csv): the photos of --split-from's train people "
                             "join the faces (real webcam faces, turned, raised and in sunglasses)")
    parser.add_argument("--split-from", type=Path, default=Path("runs/cmu"),
                        help="with --real-faces: a FaceSet imported from it whose train people are read")
    parser.add_argument("--real-repeats", type=int, default=CheckTrainConfig.real_repeats,
                        help="with --real-faces: readings of each real photo (each at another size, contrast, blur)")
    args = parser.parse_args(argv)
    for pitch in args.pitches:  # SynthPIE's own check of a pitch, before minutes of rendering
        try:
            synth_config("varied", pitch=pitch)
        except DataError as error:
            parser.error(f"argument --pitches: {error}")
    unknown = sorted(set(args.accessories) - set(ACCESSORIES[1:]))
    if unknown:
        parser.error(f"argument --accessories: unknown accessory '{unknown[0]}' (valid: {', '.join(ACCESSORIES[1:])})")
    wallpapers = training_wallpapers(args.wallpapers) if args.wallpapers is not None else None
    try:
        real = real_photos(args.real_faces, args.split_from) if args.real_faces is not None else None
    except DataError as error:
        parser.error(f"argument --real-faces: {error}")
    config = CheckTrainConfig(seed=args.seed, epochs=args.epochs, photos=CheckTrainConfig.photos if wallpapers else 0,
                              accessories=tuple(args.accessories), pitches=tuple(args.pitches),
                              real_repeats=args.real_repeats if real is not None else 0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start = time.perf_counter()
    crops, labels, groups = examples(config, wallpapers, real)
    model, figures = train(config, crops, labels, groups)
    from safetensors.torch import save_file

    from facedata.atomic import atomic_file, write_json
    from facedata.provenance import provenance

    with atomic_file(args.out) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    figures["seconds"] = time.perf_counter() - start
    write_json(args.out.with_suffix(".json"), {"config": asdict(config), **figures, "provenance": provenance(seed=config.seed)})
    print(f"held-out AUC {figures['held_out_auc']:.4f}, error at 0.5 {figures['held_out_error_at_half']:.4f} "
          f"({figures['examples']} crops, {figures['faces']} of faces); {figures['seconds']:.0f} s; written: {args.out}")


if __name__ == "__main__":
    main()
