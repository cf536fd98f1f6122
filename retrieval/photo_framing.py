"""A photo's face cropped the way a model's training faces were framed, fitted once per dataset.

A detector's box says where a face is, not how a dataset framed its crops, and the generator's
features are made for that framing: on KDEF a crop moved by 0.05 sides and scaled by 10 % takes
"ours, all poses" from 75 to 40 R@1 (benchmarks/framing_sensitivity.py). So the photo path is fitted
on the train people's faces pasted into photos (facedata.scenes) and detected again:

- a framing per detector and kind (frontal, profile looking left or right), and per pose where at
  least `least` faces give one: the median offset and size of the dataset's crop relative to the box;
- a CNN pose classifier that reads the pose on the first crop, to pick the pose's framing;
- a reframing regressor (retrieval.reframe) that reads what is left of the error off that crop;
- seven crops: the reframed one and it moved six ways (± `spread` sides across and down, ± in
  log-size); a gallery face ranks by its nearest crop (retrieval.search.search_nearest_crop).

Measured end to end on KDEF's test people (benchmarks/photo_path.py, the same steps): 65.3 R@1 for
photos against 71.4 for the dataset's crops (0.91×), where one crop framed from the box alone gives
47.0. The spread was chosen on the val people. `rbg framing fit` makes one; `rbg query --framing`
and `rbg serve --framing` use it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facedata.align import BoxFraming, box_transform
from facedata.atomic import atomic_dir
from facedata.detect import DetectConfig, DetectedFace, detect_faces, found_at
from facedata.errors import UserError
from facedata.faceset import FaceSet, same_faces_at_resolution
from facedata.imageio import crop_square
from facedata.outputs import ArtifactKind
from facedata.photo import choose_face
from facedata.provenance import provenance
from facedata.scenes import scenes
from index.pose_classifier import PoseClassifier, PoseClassifierConfig
from retrieval.reframe import ReframeConfig, Reframer, fit_reframer

RECORD_FILE = "framing.json"
KIND = ArtifactKind("photo framing", RECORD_FILE, (RECORD_FILE, "pose_classifier.safetensors", "reframer.safetensors"))


@dataclass(frozen=True)
class FramingConfig:
    """How a photo framing is fitted: the detector, how many train faces fit the framings, the reframing
    regressor's training crops per face, the seven crops' spread (chosen on KDEF's val people), and budgets."""

    detector: str = DetectConfig.detector
    fit_faces: int = 150  # train faces pasted into photos to fit the framings on
    least: int = 5  # faces a pose's own framing needs
    reframe_copies: int = 3  # crops per train face the regressor learns from
    spread: tuple[float, float] = (0.06, 0.12)  # sides across and down, log-size (benchmarks/photo_path.py --spread)
    classifier_steps: int = PoseClassifierConfig.cnn_steps
    reframe_steps: int = ReframeConfig.steps
    seed: int = 0


def framing_key(face: DetectedFace) -> str:
    """Which fitted framing a face takes: its detector and kind (detectors frame a face differently)."""
    return f"{face.source}/{face.kind}"


def spread_pattern(offset: float, log_scale: float) -> np.ndarray:
    """(7, 3) framing moves (right, down in sides; log-scale): none, each way by `offset`, larger and smaller."""
    return np.array([[0, 0, 0], [offset, 0, 0], [-offset, 0, 0], [0, offset, 0], [0, -offset, 0],
                     [0, 0, log_scale], [0, 0, -log_scale]], dtype=np.float64)


def fit_framings(faces: np.ndarray, values: np.ndarray, config: DetectConfig, seed: int,
                 least: int = 5, progress: bool = True) -> tuple[dict[str, BoxFraming], dict]:
    """Per framing key, the median relation of the pasted dataset crop to the detection box, on these faces;
    and per key and pose ("blaze/frontal@+45", from the faces' own `values`), where ≥ `least` faces give one."""
    offsets: dict[str, list[tuple[float, float, float]]] = {}
    placed = scenes(faces, seed)
    for scene, value in zip(tqdm(placed, desc="fit framing (train people)", unit="photo", disable=not progress),
                            np.asarray(values).astype(str)):
        hits = [f for f in detect_faces(scene.image, config) if found_at(f.box, scene.truth)]
        if not hits:
            continue
        face = max(hits, key=lambda f: f.area)
        left, top, right, bottom = face.box
        width = right - left
        tx, ty = (scene.truth[0] + scene.truth[2]) / 2, (scene.truth[1] + scene.truth[3]) / 2
        across = (tx - (left + right) / 2) / width
        if face.kind == "profile-right":  # box_transform mirrors `across` for a face looking right
            across = -across
        offset = ((scene.truth[2] - scene.truth[0]) / width, across, (ty - (top + bottom) / 2) / width)
        offsets.setdefault(framing_key(face), []).append(offset)
        offsets.setdefault(f"{framing_key(face)}@{value}", []).append(offset)
    offsets = {key: rows for key, rows in offsets.items() if "@" not in key or len(rows) >= least}
    framings = {key: BoxFraming(*(float(v) for v in np.median(np.asarray(rows), axis=0))) for key, rows in offsets.items()}
    record = {key: {**asdict(framings[key]), "faces": len(offsets[key])} for key in sorted(framings)}
    return framings, record


class PhotoFraming:
    """The fitted photo path of one dataset's framing: `crops` turns a photo into its face's crops."""

    def __init__(self, framings: dict[str, BoxFraming], classifier: PoseClassifier, reframer: Reframer,
                 spread: np.ndarray, size: tuple[int, int], detect: DetectConfig, record: dict):
        self.framings, self.classifier, self.reframer = framings, classifier, reframer
        self.spread, self.size, self.detect, self.record = np.asarray(spread, np.float64), tuple(size), detect, record

    @classmethod
    def fit(cls, faces: FaceSet, photos: str | Path, edit: str, config: FramingConfig = FramingConfig(),
            progress: bool = True) -> "PhotoFraming":
        """Fitted on the train people of `faces` (the dataset's crops) and of `photos`, a FaceSet of the same
        faces at source resolution (facedata.faceset.same_faces_at_resolution), pasted into photos."""
        source = same_faces_at_resolution(faces, photos, "--photos")
        if edit not in faces.factors:
            raise UserError(f"{faces.root or faces.info.name}: has no '{edit}' factor to fit the pose's framings on")
        train_rows = np.flatnonzero((faces.faces["split"] == "train").to_numpy())
        if len(train_rows) == 0:
            raise UserError(f"{faces.root or faces.info.name}: no train people to fit a photo framing on")
        detect = DetectConfig(detector=config.detector)
        rng = np.random.default_rng(config.seed)
        fit_rows = np.sort(rng.choice(train_rows, size=min(config.fit_faces, len(train_rows)), replace=False))
        labels = faces.faces[edit].to_numpy().astype(str)
        framings, framing_record = fit_framings(source.images[fit_rows], labels[fit_rows], detect, config.seed,
                                                config.least, progress)
        reframer, reframe_record = fit_reframer(source.images[train_rows], faces.image_size,
                                                ReframeConfig(steps=config.reframe_steps, seed=config.seed),
                                                config.reframe_copies, config.seed, progress)
        classifier = PoseClassifier(PoseClassifierConfig(model="cnn", seed=config.seed, cnn_steps=config.classifier_steps))
        classifier.fit(faces.images[train_rows], labels[train_rows], progress)
        record = {"config": asdict(config), "data": str(faces.root) if faces.root else faces.info.name,
                  "photos": str(photos), "edit": edit,
                  "framing_faces": {key: value["faces"] for key, value in framing_record.items()}, "reframe": reframe_record,
                  "fit_faces": len(fit_rows), "train_faces": len(train_rows), "provenance": provenance(seed=config.seed)}
        return cls(framings, classifier, reframer, spread_pattern(*config.spread), faces.image_size, detect, record)

    def transform(self, image: np.ndarray, face: DetectedFace) -> np.ndarray:
        """The (2, 3) crop transform of `face`: its kind's framing, then its pose's, then reframed."""
        aspect = self.size[0] / self.size[1]
        key = framing_key(face)
        transform = box_transform(face, framing=self.framings.get(key, BoxFraming()), aspect=aspect)
        pose = str(self.classifier.predict(crop_square(image, transform, self.size)[None])[0])
        if f"{key}@{pose}" in self.framings:
            transform = box_transform(face, framing=self.framings[f"{key}@{pose}"], aspect=aspect)
        return Reframer.corrected(transform, self.reframer.errors(crop_square(image, transform, self.size)[None])[0])

    def crops(self, image: np.ndarray, label: str = "photo", face: int = 1) -> np.ndarray:
        """The `face`-th largest face of a (H, W) uint8 photo as (7, h, w) uint8 crops at the model's size: the
        reframed crop first, then it moved by each move of the spread; a NoFaceError names the photo."""
        chosen = choose_face(detect_faces(image, self.detect), face, label, image.shape, self.detect)
        transform = self.transform(image, chosen)
        return np.stack([crop_square(image, Reframer.corrected(transform, move), self.size) for move in self.spread])

    def save(self, folder: str | Path, force: bool = False) -> None:
        """The framings, spread and record as framing.json, the classifier and the regressor as safetensors;
        written to a temporary folder and renamed onto `folder`."""
        from safetensors.numpy import save_file

        record = {**self.record, "size": list(self.size), "detect": asdict(self.detect), "spread": self.spread.tolist(),
                  "framings": {key: asdict(f) for key, f in sorted(self.framings.items())}}
        with atomic_dir(Path(folder), kind=KIND, force=force) as tmp:
            self.classifier.save(tmp / "pose_classifier.safetensors")
            save_file({k: np.ascontiguousarray(v) for k, v in self.reframer.state_arrays().items()},
                      str(tmp / "reframer.safetensors"))
            (tmp / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> "PhotoFraming":
        """A framing save() wrote, or a UserError naming the folder and what is wrong."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        if not (folder / RECORD_FILE).is_file():
            raise UserError(f"{folder}: not a photo framing (no {RECORD_FILE}; make one with rbg framing fit)")
        try:
            record = json.loads((folder / RECORD_FILE).read_text())
            framings = {key: BoxFraming(**value) for key, value in record["framings"].items()}
            reframer = Reframer.from_arrays(load_file(str(folder / "reframer.safetensors")))
            # a framing fitted before a field existed detected the way its default was then
            detect = DetectConfig(**{"min_face_share": 0.0, "blaze_search": "tiles", **record["detect"]})
            size, spread = tuple(int(v) for v in record["size"]), np.asarray(record["spread"], np.float64)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise UserError(f"{folder}: not a readable photo framing ({type(exc).__name__}: {str(exc)[:120]})") from None
        classifier = PoseClassifier.load(folder / "pose_classifier.safetensors")
        return cls(framings, classifier, reframer, spread, size, detect, record)
