"""Choose what the CNN pose classifier reads, the crops or the same faces at source resolution, by
cross-validation over the people who are not reported (train and val), never the test people.

    python benchmarks/choose_pose_images.py --crops runs/cmu --source runs/cmu-full --out reports/pose-images-cmu.json

The train and val people are shuffled (seed 0) into `--folds` groups; each group's faces are classified
by the configured CNN (index.pose_cnn, the bench's default: 3 members × 1,200 steps) fitted on the other
groups, once on the crops and once on the source-resolution faces (the same people and folds). Prints
the accuracy per fold and their mean for each, and the choice: the higher mean. --test also scores
the classifiers fitted on the train people on the test people (report once, after the choice).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from facedata.atomic import write_json
from facedata.faceset import FaceSet, same_faces_at_resolution
from facedata.provenance import provenance
from index.pose_classifier import PoseClassifier, PoseClassifierConfig


def folds_of(people: list[str], folds: int, seed: int) -> list[np.ndarray]:
    """The people shuffled by `seed` and cut into `folds` nearly equal groups."""
    return np.array_split(np.random.default_rng(seed).permutation(sorted(people)), folds)


def fold_accuracies(faces: FaceSet, factor: str, groups: list[np.ndarray], config: PoseClassifierConfig) -> list[float]:
    """Per group: the share of its faces whose `factor` the classifier fitted on the other groups names right."""
    out = []
    for group in groups:
        held = faces.faces["identity"].isin(group).to_numpy()
        fit, scored = faces.where(~held, "holding a fold out"), faces.where(held, "keeping a fold")
        classifier = PoseClassifier(config).fit(fit.images, fit.faces[factor].to_numpy(), progress=False)
        out.append(classifier.accuracy(scored.images, scored.faces[factor].to_numpy()))
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", required=True, help="FaceSet of the crops the generator reads (e.g. --size 32)")
    parser.add_argument("--source", required=True, help="FaceSet of the same faces at source resolution")
    parser.add_argument("--factor", default="pose")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--members", type=int, default=PoseClassifierConfig.cnn_members, help="nets averaged")
    parser.add_argument("--steps", type=int, default=PoseClassifierConfig.cnn_steps, help="optimizer steps per net")
    parser.add_argument("--test", action="store_true", help="also fit on the train people and score the test people")
    parser.add_argument("--out", default=None, help="JSON file to write")
    args = parser.parse_args(argv)

    crops = FaceSet.open(args.crops)
    source = same_faces_at_resolution(crops, args.source, "--source", "--crops")
    seen = crops.faces["split"].isin(["train", "val"]).to_numpy()
    groups = folds_of(crops.where(seen, "keeping train and val").identities(), args.folds, args.seed)
    config = PoseClassifierConfig(model="cnn", seed=args.seed, cnn_members=args.members, cnn_steps=args.steps)
    record: dict = {"crops": args.crops, "source": args.source, "factor": args.factor, "folds": [list(g) for g in groups],
                    "classifier": {"model": config.model, "members": config.cnn_members, "steps": config.cnn_steps}}
    for name, faces in (("crops", crops), ("source", source)):
        start = time.perf_counter()
        accuracies = fold_accuracies(faces.where(seen, "keeping train and val"), args.factor, groups, config)
        record[name] = {"image_size": list(faces.image_size), "fold_accuracy": accuracies,
                        "mean": float(np.mean(accuracies)), "seconds": round(time.perf_counter() - start, 1)}
        print(f"{name} {faces.image_size[0]}×{faces.image_size[1]}: folds "
              + " ".join(f"{100 * a:.1f}" for a in accuracies) + f", mean {100 * record[name]['mean']:.1f} %", flush=True)
    record["chosen"] = "source" if record["source"]["mean"] > record["crops"]["mean"] else "crops"
    print(f"chosen: {record['chosen']}")
    if args.test:
        for name, faces in (("crops", crops), ("source", source)):
            train, test = faces.split("train"), faces.split("test")
            classifier = PoseClassifier(config).fit(train.images, train.faces[args.factor].to_numpy(), progress=False)
            record[name]["test_accuracy"] = classifier.accuracy(test.images, test.faces[args.factor].to_numpy())
            print(f"test, {name}: {100 * record[name]['test_accuracy']:.1f} %")
    record["provenance"] = provenance(seed=args.seed)
    if args.out:
        write_json(Path(args.out), record)
        print(f"→ {args.out}")
    return record


if __name__ == "__main__":
    main()
