"""One classifier per edited factor, read as one: the cheap normalization of a gallery over several factors.

A model that edits pose and accessory together normalizes each gallery face to its own (pose,
accessory): `--normalize classifier` takes each factor's value from that factor's classifier and
generates once in the combination, where `full` generates every combination (V₁·V₂ generations).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from facedata.combined import combined_name, combined_vocabulary, join_values
from facedata.errors import UserError
from index.pose_classifier import PoseClassifier, PoseClassifierConfig

METADATA_KEY = "factor_classifiers"


class FactorClassifiers:
    """Several fitted PoseClassifiers, one per factor, predicting the combined value ("+30/sunglasses")."""

    def __init__(self, factors: Sequence[str], classifiers: Sequence[PoseClassifier]):
        assert len(factors) == len(classifiers) > 1, (factors, len(classifiers))
        self.factors = tuple(factors)
        self.members = tuple(classifiers)
        self.config = self.members[0].config

    @property
    def fitted(self) -> bool:
        return all(m.fitted for m in self.members)

    @property
    def classes(self) -> tuple[str, ...]:
        """Every combination of the members' classes."""
        return combined_vocabulary([m.classes for m in self.members])

    def predict(self, images: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Each member's prediction, joined: (n,) str combined values."""
        parts = [m.predict(images, batch_size) for m in self.members]
        return np.asarray([join_values(v) for v in zip(*parts)], dtype=str) if len(images) else np.zeros(0, dtype=str)

    def accuracy(self, images: np.ndarray, labels) -> float:
        """Share of images whose every factor is predicted right."""
        labels = np.asarray(labels).astype(str)
        return float(np.mean(self.predict(images) == labels)) if len(labels) else float("nan")

    def to_json(self) -> dict:
        return {"factor": combined_name(self.factors),
                "members": [{"factor": f, **m.to_json()} for f, m in zip(self.factors, self.members)]}

    @property
    def fingerprint(self) -> str:
        """sha256 over the members' fingerprints."""
        return hashlib.sha256("|".join(m.fingerprint for m in self.members).encode()).hexdigest()

    def save(self, path: str | Path) -> None:
        """One safetensors file: each member's arrays under "<i>.<name>", the members' records as metadata."""
        from safetensors.numpy import save_file

        arrays = {}
        for i, member in enumerate(self.members):
            if member._arrays is None:
                raise UserError("only fitted logreg or cnn classifiers can be saved")
            arrays.update({f"{i}.{k}": np.ascontiguousarray(v) for k, v in member._arrays.items()})
        save_file(arrays, str(path), metadata={METADATA_KEY: json.dumps(self.to_json())})


def load_classifier(path: str | Path):
    """The classifier an index saved: a PoseClassifier, or FactorClassifiers for several factors."""
    import tempfile

    from safetensors import safe_open
    from safetensors.numpy import save_file

    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
            if METADATA_KEY not in metadata:
                return PoseClassifier.load(path)
            record = json.loads(metadata[METADATA_KEY])
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except UserError:
        raise
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise UserError(f"{path}: not a readable pose classifier ({type(exc).__name__}: {str(exc)[:120]})") from None
    members = []
    with tempfile.TemporaryDirectory() as scratch:
        for i, member in enumerate(record["members"]):
            own = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.split(".", 1)[0] == str(i)}
            file = Path(scratch) / f"{i}.safetensors"
            save_file(own, str(file), metadata={"pose_classifier": json.dumps(
                {"config": member["config"], "classes": member["classes"]})})
            members.append(PoseClassifier.load(file))
    return FactorClassifiers([m["factor"] for m in record["members"]], members)


def fit_per_factor(faces, factors: Sequence[str], config: PoseClassifierConfig, progress: bool = True,
                   splits: tuple[str, ...] = ("train",)) -> FactorClassifiers:
    """One classifier per factor, each fitted on the `splits` people's labels of its factor."""
    from index.pose_classifier import fit_on_train_split

    return FactorClassifiers(factors, [fit_on_train_split(faces, f, config, progress, splits)[0] for f in factors])
