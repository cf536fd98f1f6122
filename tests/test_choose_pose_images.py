"""benchmarks/choose_pose_images.py: the crops and the source-resolution faces scored on the same folds of the
people not reported, the choice and the JSON record."""

import json

from fakes import tiny_gallery

from facedata.faceset import FaceSet


def test_both_readings_are_scored_on_the_same_folds_of_train_and_val_people_and_the_better_chosen(tmp_path):
    from choose_pose_images import main

    faces = tiny_gallery(identities=6, lights=1, train_identities=4)

    def scaled(times: int, name: str):  # the CNN pools three times: the fakes' 6-px-high faces are too small for it
        return FaceSet.from_arrays(faces.images.repeat(times, axis=1).repeat(times, axis=2), faces.faces.drop(columns="source"),
                                   name, extra_factors=[f for f in faces.factors if f != "pose"]).write(tmp_path / name)

    crops, source = scaled(2, "crops"), scaled(4, "source")
    out = tmp_path / "choice.json"
    record = main(["--crops", str(crops), "--source", str(source), "--folds", "2", "--members", "1", "--steps", "20",
                   "--test", "--out", str(out)])
    seen = sorted(faces.faces.loc[faces.faces["split"] != "test", "identity"].unique())
    assert sorted(p for fold in record["folds"] for p in fold) == seen and len(record["folds"]) == 2
    for name in ("crops", "source"):
        accuracies = record[name]["fold_accuracy"]
        assert len(accuracies) == 2 and all(0 <= a <= 1 for a in accuracies)
        assert 0 <= record[name]["test_accuracy"] <= 1
    assert record["source"]["image_size"] == [2 * s for s in record["crops"]["image_size"]]
    better = "source" if record["source"]["mean"] > record["crops"]["mean"] else "crops"
    assert record["chosen"] == better and json.loads(out.read_text())["chosen"] == better
