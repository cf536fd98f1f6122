"""Photos for the detector to search: dataset faces pasted into real backgrounds, and face-free images.

Backgrounds and face-free images are scikit-image's bundled pictures without a face (no download),
plus seeded noise and textures. A scene is a 640×480 background crop with one face crop pasted at a
random scale and place (seeded); its `truth` is the pasted square, in scene pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from facedata.detect import found_at  # noqa: F401 (the benchmarks take it from here with the scenes)
from facedata.scenes import SCENE_HW, Scene, backgrounds, paste, scenes  # noqa: F401 (likewise)
from facedata.scenes import gray as _gray

FACE_FREE = ("brick", "grass", "gravel", "coffee", "rocket", "horse", "page", "text", "coins", "clock", "moon",
             "cell", "checkerboard", "colorwheel", "hubble_deep_field", "immunohistochemistry", "retina", "logo",
             "microaneurysms", "shepp_logan_phantom", "binary_blobs")  # skimage.data pictures without a face


def face_free_images(seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """(name, (H, W) uint8) pictures without a face: scikit-image's, three noises and two textures."""
    import skimage.data

    seeded = {"binary_blobs": {"rng": seed}}  # drawn at random unless seeded: the same picture on every run
    out = [(name, _gray(getattr(skimage.data, name)(**seeded.get(name, {})))) for name in FACE_FREE]
    rng = np.random.default_rng(seed)
    out.append(("uniform noise", rng.integers(0, 256, SCENE_HW, dtype=np.uint8)))
    out.append(("gaussian noise", np.clip(rng.normal(128, 40, SCENE_HW), 0, 255).astype(np.uint8)))
    blurred = np.asarray(Image.fromarray(rng.integers(0, 256, SCENE_HW, dtype=np.uint8)).resize((80, 60)).resize(SCENE_HW[::-1], Image.Resampling.BICUBIC))
    out.append(("smooth noise", blurred))
    yy, xx = np.mgrid[: SCENE_HW[0], : SCENE_HW[1]]
    out.append(("stripes", (127 + 100 * np.sin(xx / 7.0 + yy / 13.0)).astype(np.uint8)))
    out.append(("rings", (127 + 100 * np.sin(np.hypot(xx - 320, yy - 240) / 5.0)).astype(np.uint8)))
    return out


def pose_scenes(folder: Path, people: slice, per_pose: int, seed: int) -> tuple[list[Scene], pd.DataFrame]:
    """Scenes of `per_pose` faces of every pose, drawn (seeded) among the `people` slice of the sorted
    identities of a folder with images.npy and labels.csv (identity, pose); and the drawn faces' labels."""
    faces, table = np.load(folder / "images.npy"), pd.read_csv(folder / "labels.csv")
    chosen = table["identity"].isin(sorted(table["identity"].unique())[people]).to_numpy()
    rng = np.random.default_rng(seed)
    rows = np.concatenate([rng.choice(np.flatnonzero((table["pose"] == pose).to_numpy() & chosen), per_pose, replace=False)
                           for pose in sorted(table["pose"].unique())])
    return scenes(faces[rows], seed), table.iloc[rows].reset_index(drop=True)


def write_report(folder: str | Path, stem: str, record: dict, table: str) -> None:
    """A photo benchmark's record as `stem`.json and its table as `stem`.md in `folder` (each written atomically)."""
    from facedata.atomic import atomic_file, write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / f"{stem}.json", record)
    with atomic_file(folder / f"{stem}.md") as tmp:
        Path(tmp).write_text(table + "\n")


def validation_pictures(seed: int = 1234) -> list[tuple[str, np.ndarray]]:
    """(name, (H, W) uint8) face-free pictures to choose a detector's thresholds on, none of them in
    `face_free_images` or `backgrounds`: scikit-learn's two sample photos, scikit-image's cat,
    matplotlib's two sample pictures and two elevation maps, 12 fractal noises and 12 pictures of
    random shapes (seeded), each at 0.5×, 1× and 2×."""
    import matplotlib
    import skimage.data
    from PIL import ImageDraw
    from sklearn.datasets import load_sample_image

    from facedata.face_check_train import fractal

    samples = Path(matplotlib.get_data_path()) / "sample_data"
    pictures = [("china", _gray(load_sample_image("china.jpg"))), ("flower", _gray(load_sample_image("flower.jpg"))),
                ("cat", _gray(skimage.data.chelsea())),
                ("minduka", _gray(np.asarray(Image.open(samples / "Minduka_Present_Blue_Pack.png")))),
                ("logo2", _gray(np.asarray(Image.open(samples / "logo2.png")))),
                ("terrain", _gray(np.load(samples / "jacksboro_fault_dem.npz")["elevation"].astype(float))),
                ("topobathy", _gray(np.load(samples / "topobathy.npz")["topo"].astype(float)))]
    rng = np.random.default_rng(seed)
    for i in range(12):  # 1/f^beta noise, beta in [1, 3]
        pictures.append((f"fractal {i}", _gray(fractal(rng, SCENE_HW, (1.0, 3.0)))))
    for i in range(12):
        picture = Image.new("L", SCENE_HW[::-1], int(rng.integers(0, 256)))
        draw = ImageDraw.Draw(picture)
        for _ in range(int(rng.integers(10, 60))):
            x, y, w, h = int(rng.integers(0, 640)), int(rng.integers(0, 480)), int(rng.integers(5, 150)), int(rng.integers(5, 150))
            (draw.ellipse if rng.integers(2) else draw.rectangle)([x, y, x + w, y + h], fill=int(rng.integers(0, 256)))
        pictures.append((f"shapes {i}", np.asarray(picture)))
    return at_scales(pictures)


def at_scales(pictures: list[tuple[str, np.ndarray]], scales: tuple[float, ...] = (0.5, 1.0, 2.0)) -> list[tuple[str, np.ndarray]]:
    """Each (name, picture) resized by each scale (bicubic), named "name ×scale"."""
    out = []
    for name, picture in pictures:
        h, w = picture.shape
        for scale in scales:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            out.append((f"{name} ×{scale:g}", np.asarray(Image.fromarray(picture).resize(size, Image.Resampling.BICUBIC))))
    return out


# benchmarks/wallpapers.py's packages that choose the detector's thresholds; the others are the face check's
# training pictures (facedata.face_check_train.TRAINING_WALLPAPERS)
VALIDATION_WALLPAPERS = ("gnome-backgrounds", "plasma-workspace-wallpapers")


def wallpaper_pictures(folder: Path, packages: tuple[str, ...] = VALIDATION_WALLPAPERS) -> list[tuple[str, np.ndarray]]:
    """("package/name", (H, W) uint8) face-free wallpapers of `packages` in a folder benchmarks/wallpapers.py wrote."""
    from facedata.face_check_train import wallpapers_of

    return wallpapers_of(folder, packages)


CMU_FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cmu_faces"


def add_validation_arguments(parser) -> None:
    """The options naming the detector's validation sets (validation_sets): --data, --split-from, --kdef,
    --kdef-train, --scenes-per-yaw and --wallpapers."""
    parser.add_argument("--data", type=Path, default=CMU_FACES, help="cmu_faces: images.npy and labels.csv")
    parser.add_argument("--split-from", type=Path, default=Path("runs/cmu"),
                        help="a FaceSet imported from --data whose --cmu-people are used (its faces.parquet)")
    parser.add_argument("--cmu-people", choices=["train", "val"], default="train",
                        help="whose cmu_faces photos: the train people (the shipped check's choice), or the val "
                             "people, for a face check that learned the train people's faces "
                             "(facedata.face_check_train --real-faces)")
    parser.add_argument("--kdef", type=Path, default=None, help="a KDEF folder (images.npy, labels.csv with pose)")
    parser.add_argument("--kdef-train", type=int, default=45, help="KDEF's first N people are its train people")
    parser.add_argument("--scenes-per-yaw", type=int, default=40)
    parser.add_argument("--wallpapers", type=Path, default=None,
                        help="a folder benchmarks/wallpapers.py wrote: its validation packages' pictures join the "
                             "face-free validation pictures, each at 0.5x, 1x and 2x")


def validation_sets(args, seed: int) -> tuple[list[np.ndarray], list[Scene], list[np.ndarray]]:
    """The detector's validation pictures: the cmu_faces photos of the recipe's train people (or val people:
    --cmu-people), scenes of KDEF's train people (none without --kdef), and the face-free validation_pictures()
    (with --wallpapers, and the validation wallpapers at three scales). None is in benchmarks/detect_faces.py's
    tables but the cmu_faces photos, which it reads all of."""
    from facedata.face_check_train import real_photos

    cmu_images = list(real_photos(args.data, args.split_from, args.cmu_people)[0])
    scenes = pose_scenes(args.kdef, slice(args.kdef_train), args.scenes_per_yaw, seed)[0] if args.kdef is not None else []
    free = validation_pictures()
    if args.wallpapers is not None:
        free += at_scales(wallpaper_pictures(args.wallpapers))
    return cmu_images, scenes, [picture for _, picture in free]
