"""A pose classifier: the 2-step baselines' step 1, and the pose a gallery face is normalized to when
a build skips the generator's 7-pose search (`--normalize classifier|none`).

"logreg" (the default, the paper-style cheap step 1): per-image standardized pixels → PCA → logistic
regression, fitted with scikit-learn and predicted through its own arrays in numpy, so that a
classifier saved with an index (safetensors, no pickle) predicts exactly what the fitted one did.
"mlp": the same pixels into scikit-learn's MLP (not savable). "cnn": a small convolutional net with
flips and shifts (index.pose_cnn), for real photos where the pixels' linear model fails; savable too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from facedata.combined import edited_factors
from facedata.errors import UserError

CLASSIFIER_MODELS = ("logreg", "mlp", "cnn")
SAVABLE_MODELS = ("logreg", "cnn")
CLASSIFIER_FILE = "pose_classifier.safetensors"


@dataclass(frozen=True)
class PoseClassifierConfig:
    """Which classifier (CLASSIFIER_MODELS) and its settings: PCA + logistic regression or MLP, or the CNN's budget."""

    model: str = "logreg"  # "logreg", "mlp" or "cnn"
    pca_components: int | None = 64  # None: the classifier sees all pixels
    C: float = 1.0  # inverse L2 strength of the logistic regression
    hidden: int = 256  # MLP hidden units
    max_iter: int = 1000
    seed: int = 0
    cnn_members: int = 3  # model "cnn": nets averaged (index.pose_cnn.PoseCNNConfig)
    cnn_steps: int = 1200  # model "cnn": optimizer steps of 32 images per net

    def __post_init__(self) -> None:
        if self.model not in CLASSIFIER_MODELS:
            raise UserError(f"unknown pose classifier '{self.model}' (valid: {', '.join(CLASSIFIER_MODELS)})")


def standardized_pixels(images: np.ndarray) -> np.ndarray:
    """Each image as a zero-mean, unit-variance pixel vector, (n, H·W) float32: light's overall level drops out."""
    images = np.asarray(images)
    assert images.ndim == 3, images.shape
    x = images.reshape(len(images), -1).astype(np.float32)
    x -= x.mean(axis=1, keepdims=True)
    x /= np.maximum(x.std(axis=1, keepdims=True), 1e-6)
    return x


class PoseClassifier:
    """Predicts an image's value of the edited factor (its pose) from its pixels.

    The paper's classifier reads VGG-Face fc6 features and reaches 73.3 % on Multi-PIE test faces; ours
    reads the pixels (no pretrained face network here), trained on the train identities' images.
    """

    def __init__(self, config: PoseClassifierConfig = PoseClassifierConfig()):
        self.config = config
        self._pipeline = None  # the fitted MLP pipeline (model "mlp")
        self._arrays: dict[str, np.ndarray] | None = None  # the fitted weights (models "logreg" and "cnn")
        self._cnn = None  # the nets built from those arrays (model "cnn")
        self._classes: tuple[str, ...] = ()
        self._image_size: tuple[int, int] | None = None  # (H, W) of the faces it was fitted on (None: not recorded)

    def fit(self, images: np.ndarray, labels, progress: bool = True) -> "PoseClassifier":
        """Train on images (n, H, W) uint8 and their labels (n,) str; `progress`: the CNN's progress bar."""
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression
        from sklearn.neural_network import MLPClassifier
        from sklearn.pipeline import make_pipeline

        labels = np.asarray(labels).astype(str)
        assert images.ndim == 3 and labels.shape == (len(images),), (images.shape, labels.shape)
        if len(np.unique(labels)) < 2:
            raise UserError(f"a pose classifier needs ≥ 2 classes to learn, got {sorted(set(labels))}")
        c = self.config
        self._image_size = (int(images.shape[1]), int(images.shape[2]))
        if c.model == "cnn":
            from index.pose_cnn import PoseCNN, PoseCNNConfig

            self._classes = tuple(sorted(str(v) for v in np.unique(labels)))
            self._cnn = PoseCNN.fit(images, labels, self._classes,
                                    PoseCNNConfig(members=c.cnn_members, steps=c.cnn_steps, seed=c.seed), progress=progress)
            self._arrays = self._cnn.state_arrays()
            return self
        if c.model == "logreg":
            head = LogisticRegression(C=c.C, max_iter=c.max_iter, random_state=c.seed)
        else:
            head = MLPClassifier(hidden_layer_sizes=(c.hidden,), max_iter=c.max_iter, early_stopping=True, random_state=c.seed)
        steps = [head]
        x = standardized_pixels(images)
        pca = None
        if c.pca_components is not None:
            pca = PCA(n_components=min(c.pca_components, *x.shape), random_state=c.seed)
            steps.insert(0, pca)
        pipeline = make_pipeline(*steps).fit(x, labels)
        self._classes = tuple(str(v) for v in pipeline.classes_)
        if c.model == "mlp":
            self._pipeline = pipeline
            return self
        width = x.shape[1]
        self._arrays = {
            "pca_mean": (pca.mean_ if pca is not None else np.zeros(width)).astype(np.float32),
            "pca_components": (pca.components_ if pca is not None else np.eye(width)).astype(np.float32),
            "coef": head.coef_.astype(np.float32),
            "intercept": head.intercept_.astype(np.float32),
        }
        return self

    @property
    def fitted(self) -> bool:
        return self._pipeline is not None or self._arrays is not None

    @property
    def classes(self) -> tuple[str, ...]:
        assert self.fitted, "fit the classifier first"
        return self._classes

    def _predict_codes(self, x: np.ndarray) -> np.ndarray:
        """Class positions for standardized pixel rows (n, H·W), by the logistic regression's arrays."""
        a = self._arrays
        scores = ((x - a["pca_mean"]) @ a["pca_components"].T) @ a["coef"].T + a["intercept"]
        if scores.shape[1] == 1:  # two classes: one decision function, positive = the second class
            return (scores[:, 0] > 0).astype(np.int64)
        return np.argmax(scores, axis=1)

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(H, W) of the faces it reads: those it was fitted on (None for a classifier saved before it was recorded)."""
        return self._image_size

    def predict(self, images: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Predicted labels, (n,) str, computed in batches; faces of another size than it was fitted on are
        refused (a CNN would read them, wrongly)."""
        assert self.fitted, "fit the classifier first"
        if self._image_size is not None and len(images) and tuple(images.shape[1:3]) != self._image_size:
            h, w = self._image_size
            raise UserError(f"the pose classifier reads {h}×{w} faces (those it was fitted on), got "
                            f"{images.shape[1]}×{images.shape[2]}: give it the same faces at {h}×{w} "
                            "(--pose-images where it was fitted on them)")
        classes = np.asarray(self._classes)
        parts = []
        for i in range(0, len(images), batch_size):
            if self._cnn is not None:
                parts.append(classes[np.argmax(self._cnn.probabilities(images[i : i + batch_size]), axis=1)])
                continue
            x = standardized_pixels(images[i : i + batch_size])
            parts.append(self._pipeline.predict(x) if self._pipeline is not None else classes[self._predict_codes(x)])
        return np.concatenate(parts).astype(str) if parts else np.zeros(0, dtype=str)

    def accuracy(self, images: np.ndarray, labels) -> float:
        """Share of images whose predicted label is the given one."""
        labels = np.asarray(labels).astype(str)
        return float(np.mean(self.predict(images) == labels)) if len(labels) else float("nan")

    def to_json(self) -> dict:
        return {"config": asdict(self.config), "classes": list(self._classes),
                **({"image_size": list(self._image_size)} if self._image_size is not None else {})}

    @property
    def fingerprint(self) -> str:
        """sha256 of the fitted arrays and classes: equal fingerprints predict alike."""
        assert self._arrays is not None, "only a fitted logistic-regression or CNN classifier has a fingerprint"
        digest = hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode())
        for name in sorted(self._arrays):
            digest.update(np.ascontiguousarray(self._arrays[name]).tobytes())
        return digest.hexdigest()

    def save(self, path: str | Path) -> None:
        """Write the fitted weights as safetensors (arrays + the config and classes as metadata)."""
        from safetensors.numpy import save_file

        if self._arrays is None:
            raise UserError(f"only a fitted pose classifier of model {' or '.join(SAVABLE_MODELS)} can be saved")
        save_file({k: np.ascontiguousarray(v) for k, v in self._arrays.items()}, str(path),
                  metadata={"pose_classifier": json.dumps(self.to_json())})

    @classmethod
    def load(cls, path: str | Path) -> "PoseClassifier":
        """A classifier saved by save(), or a UserError naming the file."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                record = json.loads(f.metadata()["pose_classifier"])
                arrays = {k: f.get_tensor(k) for k in f.keys()}
            classifier = cls(PoseClassifierConfig(**record["config"]))
            classifier._classes = tuple(str(v) for v in record["classes"])
            if record.get("image_size") is not None:
                classifier._image_size = tuple(int(v) for v in record["image_size"])
            if classifier.config.model == "cnn":
                from index.pose_cnn import PoseCNN

                classifier._cnn = PoseCNN.from_arrays(arrays, classifier._classes)
            elif set(arrays) != {"pca_mean", "pca_components", "coef", "intercept"}:
                raise ValueError(f"arrays {sorted(arrays)[:6]} are not a logistic regression's")
        except Exception as exc:  # safetensors raises several types for a damaged file
            raise UserError(f"{path}: not a readable pose classifier ({type(exc).__name__}: {str(exc)[:120]})") from None
        classifier._arrays = arrays
        return classifier


def fit_cached(config: PoseClassifierConfig, images: np.ndarray, labels, cache: Path | None) -> PoseClassifier:
    """A classifier fitted on (images, labels), read from `cache` when the same config saw the same faces.

    A CNN takes minutes to fit; a bench re-run (another layer, another split) then takes it from the
    cache file, keyed by the config, the images' bytes and the labels. Models that cannot be saved fit anew.
    """
    labels = np.asarray(labels).astype(str)
    if cache is None or config.model not in SAVABLE_MODELS:
        return PoseClassifier(config).fit(images, labels)
    digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode())
    digest.update(f"{images.shape}|{images.dtype}|".encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update("\n".join(labels.tolist()).encode())
    path = Path(cache) / f"pose-classifier-{config.model}-{digest.hexdigest()[:24]}.safetensors"
    if path.is_file():
        return PoseClassifier.load(path)
    classifier = PoseClassifier(config).fit(images, labels)
    from facedata.atomic import atomic_file

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        classifier.save(tmp)
    return classifier


def fit_on_train_split(faces, factor: str, config: PoseClassifierConfig = PoseClassifierConfig(),
                       progress: bool = True, splits: tuple[str, ...] = ("train",)) -> tuple[PoseClassifier, dict]:
    """A classifier of `factor` fitted on a FaceSet's train split (or its `splits`: train and val for a test
    gallery, every person outside it), and a record of what it learned from.

    The cheap normalizations of a gallery build learn pose from labelled faces of other people: by
    default the train identities of the gallery's own FaceSet. Several factors ("pose+accessory") fit
    one classifier per factor (index.factor_classifiers).
    """
    parts = edited_factors(factor)
    if len(parts) > 1:
        from index.factor_classifiers import fit_per_factor

        classifier = fit_per_factor(faces, parts, config, progress, splits)
        train = faces.where(faces.faces["split"].isin(splits).to_numpy(), f"keeping the {' and '.join(splits)} people")
        return classifier, {"fitted_on": faces.info.name, "path": str(faces.root) if faces.root else None,
                            "faces": len(train), "identities": train.num_identities, "factors": list(parts),
                            "splits": sorted(set(train.faces["split"]))}
    if factor not in faces.factors or "train" not in set(faces.faces["split"]):
        raise UserError(f"{faces.root or faces.info.name}: no train split with {factor} labels to fit the pose classifier "
                        "on (give --classifier-data FACESET with labelled faces, or --normalize full)")
    train = faces.where(faces.faces["split"].isin(splits).to_numpy(), f"keeping the {' and '.join(splits)} people")
    classifier = PoseClassifier(config).fit(train.images, train.faces[factor].to_numpy(), progress)
    return classifier, {"fitted_on": faces.info.name, "path": str(faces.root) if faces.root else None,
                        "faces": len(train), "identities": train.num_identities,
                        "splits": sorted(set(train.faces["split"]))}
