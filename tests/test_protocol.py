"""The retrieval protocol: seeded queries whose target never equals the query's own value."""

import numpy as np
import pandas as pd
import pytest

from facedata.errors import UserError
from facedata.faceset import FaceSet
from retrieval.protocol import sample_queries, score

POSES = ("-30", "0", "+30")


def grid_faceset(identities: int = 3, lights: int = 2) -> FaceSet:
    rows = [(f"id{i}", p, f"{l:02d}") for i in range(identities) for p in POSES for l in range(lights)]
    faces = pd.DataFrame(rows, columns=["identity", "pose", "illumination"])
    images = np.arange(len(rows), dtype=np.uint8)[:, None, None] * np.ones((1, 4, 4), np.uint8)
    return FaceSet.from_arrays(images, faces, "grid", factors={"pose": POSES})


def test_query_targets_never_equal_the_query_pose():
    gallery = grid_faceset()
    queries = sample_queries(gallery, "pose", 500, seed=3)
    own = gallery.faces["pose"].to_numpy()[queries.positions]
    assert len(queries) == 500
    assert not np.any(own == queries.targets)
    assert set(queries.targets) == set(POSES)


def test_queries_are_deterministic_per_seed():
    gallery = grid_faceset()
    a, b, c = (sample_queries(gallery, "pose", 50, seed=s) for s in (1, 1, 2))
    assert np.array_equal(a.positions, b.positions) and np.array_equal(a.targets, b.targets)
    assert not (np.array_equal(a.positions, c.positions) and np.array_equal(a.targets, c.targets))


def test_a_single_valued_factor_cannot_be_queried():
    gallery = grid_faceset().filter(pose="0")
    with pytest.raises(UserError, match="single value"):
        sample_queries(FaceSet.from_arrays(gallery.images, gallery.faces, "one", factors={"pose": ("0",)}), "pose", 5)


def test_score_counts_identity_and_target_pose_and_illumination():
    gallery = grid_faceset(identities=2, lights=2)
    queries = sample_queries(gallery, "pose", 40, seed=0)
    faces = gallery.faces.reset_index(drop=True)
    q = queries.faces(gallery)
    # a perfect ranking under criterion 2: the row with the query's identity, target pose and illumination
    perfect = np.array([
        faces.index[(faces.identity == q.identity[i]) & (faces.pose == queries.targets[i]) & (faces.illumination == q.illumination[i])][0]
        for i in range(len(queries))
    ])[:, None]
    for criterion in (1, 2):
        report, correct = score(perfect, queries, gallery, criterion, ks=(1,))
        assert report.recall[1] == 1.0 and correct.all()
    # the query image itself is never correct: its pose is not the target
    report, _ = score(queries.positions[:, None], queries, gallery, 1, ks=(1,))
    assert report.recall[1] == 0.0
