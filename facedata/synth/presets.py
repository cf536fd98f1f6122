"""SynthPIE's configuration: one frozen dataclass saved beside every rendered FaceSet, and the presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from facedata.errors import DataError
from facedata.faceset import format_pose
from facedata.splits import default_val_identities

ACCESSORIES = ("none", "glasses", "tinted_glasses", "sunglasses", "cap", "brimmed_hat", "beanie")
OCCLUSIONS = ("no", "yes")
EXPRESSION_NAMES = ("neutral", "happy", "surprised", "angry", "sad", "disgusted", "afraid")  # see `variety`
BACKDROPS = ("flat", "varied")
PAPER_POSES = (-45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0)
MIN_IMAGE_SIZE = 8
MAX_YAW = 90.0


@dataclass(frozen=True)
class SynthConfig:
    """What to render: identities × poses × illuminations × accessories × occlusion, and how.

    Poses are yaw angles in degrees, positive = the face turned toward the image's right.
    Illuminations are labelled "00".."NN": "00" is ambient light only, the others add one
    directional flash each, fixed in the camera frame (see `facedata.synth.lights`).
    `illumination_subset` picks labels to render (empty = all of them).
    `identity_spread` scales how far each identity's shape and albedo deviate from the mean face
    (0 = every identity is the mean face).

    Variety (all off by default, which renders SynthPIE as it always was; see `facedata.synth.variety`):
    `expressions` is a factor like the pose; `sex_and_age` draws a sex and an age per identity;
    `skin_texture` scales fine albedo texture; `backdrop="varied"` and `exposure` (the sd of a log
    gain) change per session (identity × expression); `tilt` (degrees) and `noise` (gray levels) are
    the largest in-plane tilt and sensor-noise sd, drawn per image. `head_scale` and `eye_row` set
    the framing (pixels per head unit and the eye line, as fractions of the image height). `pitch` raises
    (negative: lowers) every head by that many degrees, on top of its yaw.

    The first `train_identities` people are the train side, its last `val_identities` val (None:
    about 10 %, facedata.splits; resolved on construction so the saved config names the number).
    """

    identities: int = 24
    poses: tuple[float, ...] = PAPER_POSES
    illuminations: int = 20
    illumination_subset: tuple[str, ...] = ()
    accessories: tuple[str, ...] = ("none",)
    occlusion: tuple[str, ...] = ("no",)
    expressions: tuple[str, ...] = ("neutral",)
    image_size: int = 32
    supersample: int = 3
    identity_spread: float = 0.6  # calibrated: 2-step raw-image baseline ≈ the paper's (README)
    ambient: float = 0.35
    flash: float = 0.9
    light_range: float = 90.0  # largest |azimuth| of a flash, degrees
    background: float = 0.45  # display gray level of the backdrop, 0..1
    train_identities: int = 16
    val_identities: int | None = None
    seed: int = 0
    name: str = "synthpie"
    sex_and_age: bool = False
    skin_texture: float = 0.0
    backdrop: str = "flat"
    exposure: float = 0.0
    tilt: float = 0.0
    pitch: float = 0.0  # degrees the head is raised (negative: lowered), every image alike
    noise: float = 0.0
    head_scale: float = 0.37
    eye_row: float = 0.42

    TUPLES = ("poses", "accessories", "occlusion", "illumination_subset", "expressions")

    def __post_init__(self) -> None:
        object.__setattr__(self, "poses", tuple(float(p) for p in self.poses))
        object.__setattr__(self, "accessories", tuple(str(a) for a in self.accessories))
        object.__setattr__(self, "occlusion", tuple(str(o) for o in self.occlusion))
        object.__setattr__(self, "illumination_subset", tuple(str(i) for i in self.illumination_subset))
        object.__setattr__(self, "expressions", tuple(str(e) for e in self.expressions))
        if self.val_identities is None:
            object.__setattr__(self, "val_identities", default_val_identities(self.train_identities))
        self._validate()

    def _validate(self) -> None:
        if self.identities < 1:
            raise DataError(f"identities={self.identities}: must be at least 1")
        if not 0 <= self.train_identities <= self.identities:
            raise DataError(f"train_identities={self.train_identities}: must be between 0 and identities={self.identities}")
        if not 0 <= self.val_identities <= max(0, self.train_identities - 1):
            raise DataError(f"val_identities={self.val_identities}: must be between 0 and {max(0, self.train_identities - 1)} "
                            f"(all but one of the train_identities={self.train_identities})")
        if self.image_size < MIN_IMAGE_SIZE:
            raise DataError(f"image size {self.image_size}: must be at least {MIN_IMAGE_SIZE} pixels")
        if not 1 <= self.supersample <= 8:
            raise DataError(f"supersample={self.supersample}: must be between 1 and 8")
        if not self.poses:
            raise DataError("poses: give at least one yaw angle")
        bad = [p for p in self.poses if abs(p) > MAX_YAW]
        if bad:
            raise DataError(f"pose {format_pose(bad[0])}: yaw must lie within ±{MAX_YAW:g} degrees")
        if len(set(self.pose_labels)) != len(self.poses):
            raise DataError(f"poses {list(self.pose_labels)}: each yaw angle may appear once")
        if not 1 <= self.illuminations <= 100:
            raise DataError(f"illuminations={self.illuminations}: must be between 1 and 100")
        labels = illumination_labels(self.illuminations)
        unknown = [i for i in self.illumination_subset if i not in labels]
        if unknown:
            raise DataError(f"illumination {unknown[0]!r}: not among {labels[0]}..{labels[-1]}")
        for what, given, valid in (("accessory", self.accessories, ACCESSORIES), ("occlusion", self.occlusion, OCCLUSIONS),
                                   ("expression", self.expressions, EXPRESSION_NAMES)):
            if not given:
                raise DataError(f"{what}: give at least one value (valid: {', '.join(valid)})")
            unknown = [v for v in given if v not in valid]
            if unknown:
                raise DataError(f"{what} {unknown[0]!r}: unknown (valid: {', '.join(valid)})")
            if len(set(given)) != len(given):
                raise DataError(f"{what} {list(given)}: each value may appear once")
        if not 0.0 <= self.identity_spread <= 10.0:
            raise DataError(f"identity_spread={self.identity_spread}: must be between 0 and 10")
        if not 0.0 <= self.light_range <= 90.0:
            raise DataError(f"light_range={self.light_range}: must be between 0 and 90 degrees")
        for knob in ("ambient", "flash", "background"):
            value = getattr(self, knob)
            if not 0.0 <= value <= 4.0:
                raise DataError(f"{knob}={value}: must be between 0 and 4")
        if self.seed < 0:
            raise DataError(f"seed={self.seed}: must be a non-negative integer")
        if self.backdrop not in BACKDROPS:
            raise DataError(f"backdrop {self.backdrop!r}: unknown (valid: {', '.join(BACKDROPS)})")
        if not -45.0 <= self.pitch <= 45.0:
            raise DataError(f"pitch={self.pitch}: must be between -45 and 45 degrees")
        for knob, top in (("skin_texture", 4.0), ("exposure", 1.0), ("tilt", 45.0), ("noise", 64.0)):
            value = getattr(self, knob)
            if not 0.0 <= value <= top:
                raise DataError(f"{knob}={value}: must be between 0 and {top:g}")
        if not 0.1 <= self.head_scale <= 0.6:
            raise DataError(f"head_scale={self.head_scale}: must be between 0.1 and 0.6")
        if not 0.2 <= self.eye_row <= 0.7:
            raise DataError(f"eye_row={self.eye_row}: must be between 0.2 and 0.7")

    @property
    def varied(self) -> bool:
        """Whether any per-image nuisance (backdrop, exposure, tilt, noise) is on."""
        return self.backdrop != "flat" or self.exposure > 0 or self.tilt > 0 or self.noise > 0

    @property
    def pose_labels(self) -> tuple[str, ...]:
        return tuple(format_pose(p) for p in self.poses)

    @property
    def illumination_names(self) -> tuple[str, ...]:
        """The illumination labels rendered, in layout order."""
        labels = illumination_labels(self.illuminations)
        if not self.illumination_subset:
            return labels
        wanted = set(self.illumination_subset)
        return tuple(label for label in labels if label in wanted)

    @property
    def image_count(self) -> int:
        per_identity = len(self.expressions) * len(self.accessories) * len(self.occlusion)
        return self.identities * per_identity * len(self.poses) * len(self.illumination_names)

    def to_json(self) -> dict:
        record = asdict(self)
        for key in self.TUPLES:
            record[key] = list(record[key])
        return record

    @classmethod
    def from_json(cls, record: dict) -> "SynthConfig":
        """The config of a saved record; one from before val splits existed had none (val_identities 0)."""
        return cls(**{"val_identities": 0, **record, **{k: tuple(record[k]) for k in cls.TUPLES if k in record}})


def illumination_labels(count: int) -> tuple[str, ...]:
    """Labels "00", "01", ... for `count` lighting conditions ("00" = ambient only)."""
    return tuple(f"{i:02d}" for i in range(count))


PRESETS: dict[str, SynthConfig] = {
    # §4.1: Multi-PIE session 1, 249 identities × 7 poses × 20 illuminations, first 100 train.
    "paper": SynthConfig(identities=249, train_identities=100, name="synthpie-paper"),
    # §4.2: CAS-PEAL-R1 accessories, 438 identities × 7 classes, frontal, first 350 train.
    "accessory": SynthConfig(
        identities=438,
        train_identities=350,
        poses=(0.0,),
        illumination_subset=("07",),
        accessories=ACCESSORIES,
        name="synthpie-accessory",
    ),
    # §4.3: the paper-like set with and without a black bar over the eyes.
    "completion": SynthConfig(identities=249, train_identities=100, occlusion=OCCLUSIONS, name="synthpie-completion"),
    # Beyond the paper, for pre-training toward real photos: 7 expressions, sex and age, skin
    # texture, backdrops, exposure, tilt and noise, framed like KDEF's crops (a smaller head).
    "varied": SynthConfig(
        identities=400,
        train_identities=360,
        illumination_subset=("00", "03", "07", "11", "17"),
        expressions=EXPRESSION_NAMES,
        sex_and_age=True,
        skin_texture=1.0,
        backdrop="varied",
        exposure=0.2,
        tilt=8.0,
        noise=5.0,
        head_scale=0.3,
        eye_row=0.44,
        ambient=0.28,
        flash=0.6,
        name="synthpie-varied",
    ),
    # Several attributes at once (pose and accessory edited together): 150 identities × 5 poses × 4
    # accessories under the frontal flash, 3,000 faces, first 120 people train (the last 12 of them val).
    "pose-accessory": SynthConfig(
        identities=150,
        train_identities=120,
        poses=(-30.0, -15.0, 0.0, 15.0, 30.0),
        illumination_subset=("07",),
        accessories=("none", "glasses", "sunglasses", "cap"),
        name="synthpie-pose-accessory",
    ),
    # Demo and tests: renders in seconds.
    "small": SynthConfig(identities=24, train_identities=16, illumination_subset=("00", "04", "07", "17"), name="synthpie-small"),
}


def synth_config(preset: str, **overrides) -> SynthConfig:
    """The named preset with `overrides` applied (None values are ignored).

    Changing `identities` alone keeps the preset's train share (e.g. paper: 100/249); the val people
    are the default share of the train side unless `val_identities` is given.
    """
    if preset not in PRESETS:
        raise DataError(f"unknown preset {preset!r} (valid: {', '.join(PRESETS)})")
    base = PRESETS[preset]
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - set(base.to_json()))
    if unknown:
        raise DataError(f"unknown SynthPIE setting {unknown[0]!r}")
    if "identities" in given and "train_identities" not in given:
        n = int(given["identities"])
        if n >= 1:
            given["train_identities"] = min(n, max(1, round(n * base.train_identities / base.identities)))
    given.setdefault("val_identities", None)  # re-resolved from the train side actually used
    return replace(base, **given)
