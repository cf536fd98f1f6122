"""Faces found in a grayscale photo, offline: dlib's HOG frontal detector and its 5-point landmarks,
and for turned heads OpenCV's profile cascade (either way round) and dlib's CNN detector.

Detectors (`DetectConfig.detector`), each from a registry package that ships its weights:
- `hog`: dlib's HOG frontal detector (dlib-bin), faces turned less than about 45°;
- `haar`: OpenCV's frontal cascade and its profile cascade on the photo and on its mirror image
  (opencv-python-headless 4.x ships the cascades; 5.x does not);
- `cnn`: dlib's max-margin CNN detector (face-recognition-models' mmod_human_face_detector.dat);
- `blaze`: MediaPipe's short-range BlazeFace (facedata.blazeface; its weights ship in this package), faces
  from frontal to full profile, searched over windows of several sizes, each box then read again by a
  small face check (facedata.face_check), blended with MTCNN's ONet tuned on the check's examples
  (facedata.onet), that drops face-like textures, and faces BlazeFace scores lower let in where the
  blend is sure of them; `blaze-unchecked`: BlazeFace alone;
- `hog+haar`: HOG, then the cascades for the faces HOG missed; `hog+haar+cnn` adds the CNN;
- `hog+blaze`: HOG (with its landmarks), then BlazeFace for the faces HOG missed.
Boxes found by several detectors are merged (non-maximum suppression, the earlier detector kept).
Faces whose box a frontal detector gave carry the 5 landmarks; a profile box carries none, and is
cropped from its box (facedata.align).

dlib's frontal detector slides an 80×80 window over an image pyramid (each level 5/6 of the last), so
the narrowest face box it reports is 73 px (measured). Every photo is therefore first resized so that
the smallest face we accept (`min_face` pixels wide in the photo) becomes that wide, within a
work-size budget: small photos (a 64×60 webcam
frame) are enlarged, large ones (a 12-megapixel phone photo) are reduced. The landmarks are read on
the same work image and mapped back to the photo's own pixels.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from facedata.dlib_models import import_dlib, model_file
from facedata.errors import UserError
from facedata.imageio import resize

SMALLEST_BOX = 73  # px: the narrowest face box dlib's frontal detector reports (its window is 80×80)
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
CNN_FILE = "mmod_human_face_detector.dat"
LANDMARKED = ("hog", "cnn", "haar-frontal")  # frontal boxes dlib's 5-point predictor reads; BlazeFace's are cropped from the box
BLAZE_NARROWEST = 0.5  # BlazeFace boxes narrower than this share of min_face are dropped (its box is brow to chin)
DETECTORS: dict[str, tuple[str, ...]] = {  # name: the detectors it runs, in the order their boxes are kept
    "hog": ("hog",),
    "haar": ("haar-frontal", "haar-profile"),
    "cnn": ("cnn",),
    "hog+haar": ("hog", "haar-frontal", "haar-profile"),
    "hog+haar+cnn": ("hog", "haar-frontal", "haar-profile", "cnn"),
    "blaze": ("blaze",),
    "blaze-unchecked": ("blaze-unchecked",),
    "hog+blaze": ("hog", "blaze"),
}


@dataclass(frozen=True)
class DetectConfig:
    """How faces are searched for: the smallest face accepted, the work-size budget, the detector threshold."""

    min_face: int = 16  # px in the photo: a narrower face is refused (a 32-px crop of it would be mostly made up)
    # faces narrower than this share of the photo's shorter side are not looked for, never below min_face (search_face).
    # 0.1 (48 px in a 640×480 photo) reads 5× fewer BlazeFace windows there (27 ms against 130) and finds as many
    # validation faces, but on the KDEF photo path of the val people, whose faces are 0.08-0.29 of the photo, it found
    # 99.5 % against 100 % and fell from 90.8 to 88.8 R@1 (benchmarks/choose_min_face_share.py, docs/data.md), so the
    # default is 0: every photo searched down to min_face. Below 0.0875 BlazeFace reads the same windows as at 0.
    min_face_share: float = 0.0
    max_work_pixels: int = 2048 * 2048  # the work image (photo resized for the detector) holds at most this many
    threshold: float = 0.0  # dlib's score threshold (0 is dlib's own default; lower finds more, and more false faces)
    detector: str = "blaze"  # a key of DETECTORS (measured: benchmarks/detect_faces.py, docs/data.md)
    neighbours: int = 10  # OpenCV cascades: overlapping windows a face needs (fewer finds more, and more false faces)
    overlap: float = 0.5  # two boxes sharing more than this of the smaller one's area are one face
    cascade_box: int = 40  # px: the cascades search a photo resized so that min_face becomes this wide
    cascade_step: float = 1.05  # the cascades' scale step between window sizes
    blaze_threshold: float = 0.63  # BlazeFace's score threshold before the face check (benchmarks/choose_detector.py)
    check_threshold: float = 0.45  # the face check's probability a BlazeFace box must reach (benchmarks/choose_detector.py)
    blaze_mirror: str = "none"  # BlazeFace also reads each window's mirror image: none, mean or max (facedata.blazeface.detect)
    # how BlazeFace reads each window size (facedata.blazeface.SEARCHES): "image" reads a 640×480 photo searched down
    # to 16 px 3.5× faster (37 ms against 128 on 20 validation scenes), but at the thresholds then 3 of the 93 face-free
    # validation pictures get a face, and its best rule without one finds 528 of the 578 validation faces against the
    # tiles' 549 (benchmarks/choose_detector.py --search image, docs/data.md)
    blaze_search: str = "tiles"
    # a second way in for faces BlazeFace scores lower (small, turned webcam faces): a lower BlazeFace score vetted by
    # a surer second check, away from the first way's faces (two_way_faces). Both ways chosen on validation pictures
    # searched down to min_face, real face-free photos among them (benchmarks/choose_detector.py --wallpapers
    # --cmu-people val --onet-share 0 0.5 1 --onet tuned): the rule that finds the most with no face on any of the 225
    # face-free ones finds 54 of the 60 cmu_faces val people's photos and all 200 KDEF train scenes, with the face
    # check (which learned the train people's webcam faces) blended half and half with the tuned ONet (check_onet_share,
    # onet). The rule before (BlazeFace 0.63 with the blend 0.45, then 0.45 with the blend 0.9; MTCNN's own ONet) found
    # 52 and 196 there (docs/data.md).
    blaze_low_threshold: float = 0.55
    check_high_threshold: float = 0.85
    second_check: str = "face-check"  # who vets the second way's faces: the face check (blended) or ONet alone
    # the face check's score blended with ONet's (facedata.onet, trained on real faces): (1 − share) · check
    # + share · ONet. The two judges err on different pictures (on face-free validation pictures where one finds a
    # box very face-like, the other often finds none), so a box both find likely a face is surer than one either
    # finds alone: at 0.5 the check with real faces and the one without both find more validation faces with none on
    # the face-free pictures (benchmarks/choose_detector.py --onet-share, docs/data.md)
    check_onet_share: float = 0.5
    # which ONet judges (facedata.onet.VERSIONS): "tuned", MTCNN's ONet tuned on the face check's examples
    # (facedata.onet_tune), or "mtcnn", MTCNN's own (benchmarks/choose_detector.py --onet, docs/data.md)
    onet: str = "tuned"
    unchecked_threshold: float = 0.63  # blaze-unchecked: BlazeFace's threshold without the check (validation pictures, docs/data.md)

    def __post_init__(self):
        if self.detector not in DETECTORS:
            raise UserError(f"unknown face detector '{self.detector}' (valid: {', '.join(DETECTORS)})")
        if self.second_check not in SECOND_CHECKS:
            raise UserError(f"unknown second check '{self.second_check}' (valid: {', '.join(SECOND_CHECKS)})")
        from facedata.blazeface import SEARCHES

        if self.blaze_search not in SEARCHES:
            raise UserError(f"unknown BlazeFace search '{self.blaze_search}' (valid: {', '.join(SEARCHES)})")
        from facedata.onet import VERSIONS

        if self.onet not in VERSIONS:
            raise UserError(f"unknown ONet '{self.onet}' (valid: {', '.join(VERSIONS)})")
        if not 0.0 <= self.check_onet_share <= 1.0:
            raise UserError(f"check_onet_share {self.check_onet_share} is not a share (0 to 1)")
        if not 0.0 <= self.min_face_share < 1.0:
            raise UserError(f"min_face_share {self.min_face_share} is not a share of the photo's side (0 to below 1)")

    def search_face(self, hw: tuple[int, int]) -> int:
        """The narrowest face (px) searched for in a photo of this size: min_face_share of its shorter side,
        at least min_face."""
        return max(self.min_face, int(round(self.min_face_share * min(hw))))

    def for_photo(self, hw: tuple[int, int]) -> "DetectConfig":
        """This config with min_face the narrowest face searched for in a photo of this size (search_face)."""
        return replace(self, min_face=self.search_face(hw), min_face_share=0.0)

    def work_scale(self, hw: tuple[int, int], smallest_box: float = SMALLEST_BOX) -> float:
        """The factor the photo is resized by before detection: min_face → smallest_box px (the detector's
        narrowest box), capped by the budget."""
        h, w = hw
        return min(smallest_box / self.search_face(hw), math.sqrt(self.max_work_pixels / (h * w)))

    def describe(self) -> str:
        """The detector in words, for messages and reports."""
        return {"hog": "dlib's frontal detector", "haar": "OpenCV's frontal and profile cascades",
                "cnn": "dlib's CNN detector", "hog+haar": "dlib's frontal detector with OpenCV's frontal and profile cascades",
                "hog+haar+cnn": "dlib's frontal and CNN detectors with OpenCV's frontal and profile cascades",
                "blaze": "BlazeFace with the face check and ONet", "blaze-unchecked": "BlazeFace",
                "hog+blaze": "dlib's frontal detector with BlazeFace, the face check and ONet"}[self.detector]

    def turn_limit(self) -> str:
        """How far a face may be turned to be found, as a clause (measured on KDEF's yaws: benchmarks/detect_faces.py)."""
        return ", turned less than about 45°" if self.detector in ("hog", "cnn") else ", frontal to profile"

    def smallest_findable(self, hw: tuple[int, int]) -> float:
        """The narrowest face (px in the photo) the detector can find in a photo of this size."""
        from facedata import blazeface

        narrowest = self.search_face(hw)

        def by(source: str) -> float:  # BlazeFace searches its own windows; the others a resized work image
            if source.startswith("blaze"):
                return blazeface.smallest_findable(hw, narrowest)
            return max(float(narrowest), SMALLEST_BOX / self.work_scale(hw))

        return min(by(source) for source in DETECTORS[self.detector])


def detect_config(detector: str = DetectConfig.detector, min_face: int | None = None) -> DetectConfig:
    """The config of a command's --detector and --min-face: a given min_face (px) is the narrowest face searched
    for in every photo; None keeps DetectConfig's own search (its min_face, and its min_face_share where set)."""
    if min_face is None:
        return DetectConfig(detector=detector)
    return DetectConfig(detector=detector, min_face=min_face, min_face_share=0.0)


@dataclass(frozen=True)
class DetectedFace:
    """One face in photo pixel coordinates (x right, y down, (0, 0) the top-left corner)."""

    box: tuple[float, float, float, float]  # left, top, right, bottom
    eyes: tuple[tuple[float, float], tuple[float, float]] | None  # each eye's centre, the image-left eye first
    nose: tuple[float, float] | None  # the base of the nose; None with eyes for a profile box
    score: float  # the detector's score (dlib's; for a cascade, its number of overlapping windows)
    kind: str = "frontal"  # frontal, or profile-left / profile-right: the side of the photo the face looks to
    source: str = "hog"  # which detector found it (a member of DETECTORS' tuples)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def area(self) -> float:
        return self.width * (self.box[3] - self.box[1])


@functools.lru_cache(maxsize=1)
def dlib_face_models():
    """dlib, its HOG frontal detector and its 5-point landmark predictor, loaded once per process."""
    dlib = import_dlib("face detection and alignment")
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(str(model_file(LANDMARKS_FILE)))


@functools.lru_cache(maxsize=1)
def dlib_cnn_detector():
    """dlib's CNN (max-margin object detection) face detector, loaded once per process."""
    dlib = import_dlib("face detection")
    return dlib.cnn_face_detection_model_v1(str(model_file(CNN_FILE)))


@functools.lru_cache(maxsize=1)
def haar_cascades():
    """OpenCV's frontal (alt) and profile face cascades, loaded once per process."""
    try:
        import cv2
    except ImportError:
        raise UserError("the haar face detector needs OpenCV: pip install 'opencv-python-headless<5'") from None
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not folder:
        raise UserError(f"OpenCV {cv2.__version__} ships no Haar cascades (5.x dropped them): "
                        "pip install 'opencv-python-headless<5'")
    return cv2, cv2.CascadeClassifier(folder + "haarcascade_frontalface_alt.xml"), \
        cv2.CascadeClassifier(folder + "haarcascade_profileface.xml")


Box = tuple[float, float, float, float, float, str]  # left, top, right, bottom (photo pixels), score, kind


class WorkImages:
    """The photo resized for each detector's window (cached per size), and the way back to photo pixels."""

    def __init__(self, image: np.ndarray, config: DetectConfig):
        self.image, self.config, self._cache = image, config, {}

    def at(self, smallest_box: float) -> tuple[np.ndarray, float, float]:
        """(work image, sx, sy): the photo resized so that min_face becomes smallest_box px."""
        h, w = self.image.shape
        scale = self.config.work_scale((h, w), smallest_box)
        hw = (max(1, round(h * scale)), max(1, round(w * scale)))
        if hw not in self._cache:
            work = self.image if hw == (h, w) else resize(self.image, hw)
            self._cache[hw] = (np.ascontiguousarray(work), hw[1] / w, hw[0] / h)
        return self._cache[hw]


def _in_photo(boxes, sx: float, sy: float) -> list[Box]:
    return [(left / sx, top / sy, right / sx, bottom / sy, score, kind) for left, top, right, bottom, score, kind in boxes]


def _hog_boxes(photo: WorkImages) -> list[Box]:
    _, detector, _ = dlib_face_models()
    work, sx, sy = photo.at(SMALLEST_BOX)
    rects, scores, _ = detector.run(work, 0, photo.config.threshold)
    return _in_photo([(r.left(), r.top(), r.right() + 1, r.bottom() + 1, float(s), "frontal")
                      for r, s in zip(rects, scores)], sx, sy)


def _cnn_boxes(photo: WorkImages) -> list[Box]:
    work, sx, sy = photo.at(SMALLEST_BOX)
    found = dlib_cnn_detector()(work, 0)
    return _in_photo([(d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1, float(d.confidence),
                       "frontal") for d in found], sx, sy)


def _cascade(cascade, work: np.ndarray, config: DetectConfig) -> tuple[np.ndarray, np.ndarray]:
    boxes, counts = cascade.detectMultiScale2(work, scaleFactor=config.cascade_step, minNeighbors=config.neighbours,
                                              minSize=(config.cascade_box, config.cascade_box))
    return np.asarray(boxes).reshape(-1, 4), np.asarray(counts).reshape(-1)


def _haar_frontal_boxes(photo: WorkImages) -> list[Box]:
    _, frontal, _ = haar_cascades()
    work, sx, sy = photo.at(photo.config.cascade_box)
    boxes, counts = _cascade(frontal, work, photo.config)
    return _in_photo([(x, y, x + w, y + h, float(n), "frontal")
                      for (x, y, w, h), n in zip(boxes.tolist(), counts.tolist())], sx, sy)


def _haar_profile_boxes(photo: WorkImages) -> list[Box]:
    """OpenCV's profile cascade finds faces looking to the photo's left; on the mirror image, those looking right."""
    _, _, profile = haar_cascades()
    work, sx, sy = photo.at(photo.config.cascade_box)
    width = work.shape[1]
    out = []
    for mirrored, kind in ((False, "profile-left"), (True, "profile-right")):
        image = np.ascontiguousarray(work[:, ::-1]) if mirrored else work
        boxes, counts = _cascade(profile, image, photo.config)
        for (x, y, w, h), n in zip(boxes.tolist(), counts.tolist()):
            left, right = (width - x - w, width - x) if mirrored else (x, x + w)
            out.append((left, y, right, y + h, float(n), kind))
    return _in_photo(out, sx, sy)


def blaze_kind(keypoints: np.ndarray, width: float) -> str:
    """frontal, or profile-left / profile-right when BlazeFace's nose tip sits more than 0.15 box widths to one
    side of its eyes' midpoint (the side of the photo the face looks to)."""
    shift = (keypoints[2, 0] - keypoints[:2, 0].mean()) / max(width, 1e-9)
    return "frontal" if abs(shift) <= 0.15 else ("profile-left" if shift < 0 else "profile-right")


def blaze_faces(image: np.ndarray, min_face: int, threshold: float, mirror: str = "none", search: str = "tiles") -> list:
    """BlazeFace's faces (facedata.blazeface.Detection) over windows of the photo itself (and their mirror
    images: facedata.blazeface.detect), at least BLAZE_NARROWEST · min_face wide, best score first."""
    return blaze_faces_at(image, min_face, (threshold,), mirror, search)[0]


def blaze_faces_at(image: np.ndarray, min_face: int, thresholds: tuple[float, ...], mirror: str = "none",
                   search: str = "tiles") -> list[list]:
    """blaze_faces at several thresholds from one reading of the photo (facedata.blazeface.detect_at)."""
    from facedata.blazeface import detect_at

    return [[face for face in faces if face.box[2] - face.box[0] >= BLAZE_NARROWEST * min_face]
            for faces in detect_at(image, tuple(thresholds), smallest_face=min_face, mirror=mirror, search=search)]


def blend(check: np.ndarray, onet: np.ndarray, onet_share: float) -> np.ndarray:
    """The face check's probabilities blended with ONet's: (1 − onet_share) · check + onet_share · ONet."""
    return (1.0 - onet_share) * check + onet_share * onet


def check_probability(image: np.ndarray, boxes: np.ndarray, onet_share: float = 0.0, onet: str = "tuned") -> np.ndarray:
    """(n,) how likely each box of (H, W) uint8 holds a face: the face check's probability (facedata.face_check),
    blended with ONet's (facedata.onet, the `onet` version) by `onet_share` (DetectConfig.check_onet_share)."""
    from facedata.face_check import face_probability

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    likely = face_probability(image, boxes)
    if onet_share > 0 and len(boxes):
        from facedata.onet import onet_probability

        likely = blend(likely, onet_probability(image, boxes, version=onet), onet_share)
    return likely


def checked(image: np.ndarray, faces: list, check_threshold: float, onet_share: float = 0.0, onet: str = "tuned") -> list:
    """The faces the face check (blended with ONet by `onet_share`: check_probability) finds at least
    `check_threshold` likely faces."""
    if not faces:
        return []
    likely = check_probability(image, np.array([face.box for face in faces]), onet_share, onet)
    return [face for face, p in zip(faces, likely) if p >= check_threshold]


SECOND_CHECKS = ("face-check", "onet")  # DetectConfig.second_check
SECOND_WAY_OVERLAP = 0.3  # a second-way box overlapping a first-way face this much (IoU, as BlazeFace's NMS) is that face


def second_way(kept: np.ndarray, boxes: np.ndarray, likely: np.ndarray, check: float) -> np.ndarray:
    """Which of the lower threshold's `boxes` (n, 4) get in the second way: a check of at least `check` and no
    overlap with a face the first way `kept` (k, 4) (whose box stays the first way's: a lower threshold's weaker
    anchors would move it)."""
    from facedata.blazeface import _iou

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    kept = np.asarray(kept, dtype=np.float64).reshape(-1, 4)
    new = np.array([not len(kept) or not (_iou(box, kept) > SECOND_WAY_OVERLAP).any() for box in boxes], dtype=bool)
    return new & (np.asarray(likely) >= check) if len(boxes) else np.zeros(0, dtype=bool)


def two_way_faces(image: np.ndarray, config: "DetectConfig") -> list:
    """BlazeFace with the check: faces of score ≥ blaze_threshold the check finds ≥ check_threshold likely, then
    the faces of score ≥ blaze_low_threshold found nowhere near those that the second check finds
    ≥ check_high_threshold likely (the face check: never looser than the first way's; or MTCNN's ONet,
    facedata.onet); best score first. The face check is blended with ONet by check_onet_share."""
    share = config.check_onet_share
    if config.blaze_low_threshold >= config.blaze_threshold:  # no second way: one threshold, one NMS
        return checked(image, blaze_faces(image, config.min_face, config.blaze_threshold, config.blaze_mirror,
                                          config.blaze_search), config.check_threshold, share, config.onet)
    high_faces, low_faces = blaze_faces_at(image, config.min_face, (config.blaze_threshold, config.blaze_low_threshold),
                                           config.blaze_mirror, config.blaze_search)
    first = checked(image, high_faces, config.check_threshold, share, config.onet)
    if not low_faces:
        return first
    boxes = np.array([face.box for face in low_faces])
    if config.second_check == "onet":
        from facedata.onet import onet_probability

        likely, least = onet_probability(image, boxes, version=config.onet), config.check_high_threshold
    else:
        likely, least = check_probability(image, boxes, share, config.onet), max(config.check_high_threshold, config.check_threshold)
    keep = second_way(np.array([face.box for face in first]), boxes, likely, least)
    return sorted(first + [face for face, k in zip(low_faces, keep) if k], key=lambda face: -face.score)


def detector_fingerprint(config: "DetectConfig") -> str:
    """What the faces `config` finds depend on, for cache keys: its settings and the sha256 of the shipped weights
    its detector reads (BlazeFace's, the face check's, ONet's), so that a new threshold or a retrained check
    misses a cache made before it."""
    from facedata import blazeface, face_check, onet
    from facedata.file_hash import sha256_file_cached

    weights = (blazeface.WEIGHTS, face_check.WEIGHTS, onet.weights_of(config.onet)) if "blaze" in config.detector else ()
    return "|".join([repr(sorted(asdict(config).items()))] + [f"{w.name}:{sha256_file_cached(w)}" for w in weights])


def _blaze_boxes(photo: WorkImages, check: bool = True) -> list[Box]:
    """BlazeFace, each box then read again by the face check (two_way_faces; or, unchecked, BlazeFace at its own threshold)."""
    config = photo.config
    faces = two_way_faces(photo.image, config) if check else blaze_faces(photo.image, config.min_face, config.unchecked_threshold,
                                                                         search=config.blaze_search)
    return [(*face.box, face.score, blaze_kind(face.keypoints, face.box[2] - face.box[0])) for face in faces]


FINDERS = {"hog": _hog_boxes, "cnn": _cnn_boxes, "haar-frontal": _haar_frontal_boxes, "haar-profile": _haar_profile_boxes,
           "blaze": _blaze_boxes, "blaze-unchecked": functools.partial(_blaze_boxes, check=False)}


def _overlap(a: Box, b: Box) -> float:
    """The intersection of two boxes over the smaller one's area: 1 when one holds the other (detectors
    frame one face at different sizes, so IoU would keep both)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def found_at(box: tuple[float, float, float, float], truth: tuple[float, float, float, float]) -> bool:
    """Whether a detection box is a known face square: its centre inside the square, its width 0.3–1.5 of it."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    width, side = box[2] - box[0], truth[2] - truth[0]
    return truth[0] <= cx <= truth[2] and truth[1] <= cy <= truth[3] and 0.3 * side <= width <= 1.5 * side


def merge_boxes(found: list[tuple[str, list[Box]]], overlap: float) -> list[tuple[str, Box]]:
    """Each detector's boxes, the earlier detector's kept where two overlap by more than `overlap` (of the
    smaller box); within one detector, the higher score kept."""
    kept: list[tuple[str, Box]] = []
    for source, boxes in found:
        for box in sorted(boxes, key=lambda b: -b[4]):
            if all(_overlap(box, other) <= overlap for _, other in kept):
                kept.append((source, box))
    return kept


def detect_faces(image: np.ndarray, config: DetectConfig = DetectConfig()) -> list[DetectedFace]:
    """Every face the configured detector finds in (H, W) uint8, largest box first (ties: left to right)."""
    assert image.ndim == 2 and image.dtype == np.uint8, (image.shape, image.dtype)
    photo = WorkImages(image, config.for_photo(image.shape))
    found = [(source, FINDERS[source](photo)) for source in DETECTORS[config.detector]]
    faces = []
    for source, (left, top, right, bottom, score, kind) in merge_boxes(found, config.overlap):
        eyes = nose = None
        if kind == "frontal" and source in LANDMARKED:
            eyes, nose = _landmarks(photo, (left, top, right, bottom))
        faces.append(DetectedFace(box=(float(left), float(top), float(right), float(bottom)), eyes=eyes, nose=nose,
                                  score=float(score), kind=kind, source=source))
    return sorted(faces, key=lambda face: (-face.area, face.box[0]))



def _landmarks(photo: WorkImages, box):
    """dlib's 5 landmarks in a frontal box (photo pixels), read on HOG's work image, as (eyes, nose) in photo pixels."""
    dlib, _, predictor = dlib_face_models()
    work, sx, sy = photo.at(SMALLEST_BOX)
    left, top, right, bottom = (int(round(v)) for v in (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy))
    shape = predictor(work, dlib.rectangle(left, top, right - 1, bottom - 1))
    # dlib numbers pixel centres 0, 1, …; continuous coordinates put pixel i's centre at i + 0.5.
    points = np.array([[(shape.part(i).x + 0.5) / sx, (shape.part(i).y + 0.5) / sy] for i in range(5)])
    eyes = sorted([tuple(points[0:2].mean(0)), tuple(points[2:4].mean(0))])  # image-left eye first
    return (tuple(map(float, eyes[0])), tuple(map(float, eyes[1]))), (float(points[4, 0]), float(points[4, 1]))
