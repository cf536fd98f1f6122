"""recall@K on hand-built rankings: ties, K beyond the gallery, padding, criteria 1 and 2, groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from facedata.errors import UserError
from index.faiss_index import GalleryIndex
from retrieval.baselines import two_step_search
from retrieval.metrics import (
    correct_matrix,
    criterion2_label,
    criterion_keys,
    evaluate_ranking,
    match_keys,
    pose_change,
    recall_at_k,
    recall_by_group,
    relevant_counts,
)

# Five gallery faces and two queries asking for identity "a" in pose "+15" (query 0 lit "01", query 1 lit "02").
GALLERY = pd.DataFrame({
    "identity":     ["a",   "a",   "b",   "a",  "a"],
    "pose":         ["+15", "+15", "+15", "0",  "+15"],
    "illumination": ["00",  "01",  "01",  "01", "02"],
})
QUERIES = pd.DataFrame({"identity": ["a", "a"], "pose": ["0", "-30"], "illumination": ["01", "02"]})
TARGETS = np.array(["+15", "+15"])


def test_a_query_counts_as_hit_at_k_when_any_correct_item_is_in_its_top_k():
    correct = np.array([[False, False, True], [True, False, False], [False, False, False]])
    assert recall_at_k(correct, ks=(1, 2, 3)) == {1: pytest.approx(1 / 3), 2: pytest.approx(1 / 3), 3: pytest.approx(2 / 3)}


def test_recall_at_k_larger_than_the_gallery_is_recall_at_the_gallery_size():
    qk, gk = criterion_keys(QUERIES, TARGETS, GALLERY, "pose")
    ranked = np.array([[3, 2, 0, 1, 4], [2, 3, 0, 1, 4]])  # the whole 5-image gallery
    report = evaluate_ranking(ranked, qk, gk, ks=(1, 5, 20))
    assert report.effective_ks == {1: 1, 5: 5, 20: 5}
    assert report.recall[20] == report.recall[5] == 1.0
    assert report.recall[1] == 0.0


def test_a_ranking_cut_shorter_than_k_and_the_gallery_fails_loudly():
    with pytest.raises(AssertionError):
        recall_at_k(np.zeros((2, 3), bool), ks=(5,), gallery_size=10)


def test_padding_rows_are_never_correct():
    qk, gk = criterion_keys(QUERIES, TARGETS, GALLERY, "pose")
    ranked = np.array([[-1, -1, 0], [-1, -1, -1]])
    assert correct_matrix(ranked, qk, gk).tolist() == [[False, False, True], [False, False, False]]


def test_criterion_one_asks_for_identity_and_the_target_pose():
    qk, gk = criterion_keys(QUERIES, TARGETS, GALLERY, "pose", criterion=1)
    assert correct_matrix(np.array([[0, 1, 2, 3, 4]] * 2), qk, gk).tolist() == [[True, True, False, False, True]] * 2


def test_criterion_two_also_asks_for_the_querys_illumination():
    qk, gk = criterion_keys(QUERIES, TARGETS, GALLERY, "pose", criterion=2)
    assert correct_matrix(np.array([[0, 1, 2, 3, 4]] * 2), qk, gk).tolist() == [
        [False, True, False, False, False],
        [False, False, False, False, True],
    ]


def test_criterion_two_keeps_the_expression_on_sets_without_illumination():
    gallery = GALLERY.drop(columns="illumination").assign(expression=["happy", "sad", "sad", "sad", "happy"])
    queries = QUERIES.drop(columns="illumination").assign(expression=["sad", "sad"])
    qk, gk = criterion_keys(queries, TARGETS, gallery, "pose", criterion=2)
    assert correct_matrix(np.array([[0, 1, 4]]), qk[:1], gk).tolist() == [[False, True, False]]


def test_queries_with_no_correct_gallery_item_are_misses_and_are_counted():
    queries = pd.DataFrame({"identity": ["a", "z"], "pose": ["0", "0"], "illumination": ["01", "01"]})
    qk, gk = criterion_keys(queries, TARGETS, GALLERY, "pose")
    assert relevant_counts(qk, gk).tolist() == [3, 0]
    report = evaluate_ranking(np.array([[0, 1], [0, 1]]), qk, gk, ks=(1, 2))
    assert report.without_correct == 1
    assert report.recall == {1: 0.5, 2: 0.5}
    assert report.percent()[1] == 50.0


def test_tied_distances_rank_the_lower_gallery_row_first_in_both_searches():
    # rows 1 and 3 hold the same vector; only row 3 is a correct answer, so recall@1 is 0 by the tie rule.
    gallery = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]], np.float32)
    faces = pd.DataFrame({"identity": ["x", "x", "y", "a"], "pose": ["+15"] * 4})
    qk, gk = criterion_keys(pd.DataFrame({"identity": ["a"]}), np.array(["+15"]), faces, "pose")
    query = np.array([[0, 1, 0.1]], np.float32)
    _, flat_rows = GalleryIndex.from_vectors(gallery, faces).search(query, 2)
    _, step_rows = two_step_search(query, gallery, np.array(["+15"] * 4), np.array(["+15"]), 2)
    assert flat_rows.tolist() == step_rows.tolist() == [[1, 3]]
    assert evaluate_ranking(flat_rows, qk, gk, ks=(1, 2)).recall == {1: 0.0, 2: 1.0}


def test_match_keys_agree_exactly_when_every_column_agrees():
    qk, gk = match_keys([np.array(["a", "b"]), np.array([1, 2])], [np.array(["a", "a", "b"]), np.array([1, 2, 2])])
    assert (qk[0] == gk).tolist() == [True, False, False]
    assert (qk[1] == gk).tolist() == [False, False, True]


def test_recall_per_pose_change_group_as_in_figure_6():
    change = pose_change(np.array(["-45", "0", "+15", "+45"]), np.array(["+45", "+15", "0", "-45"]))
    assert change.tolist() == [90.0, 15.0, 15.0, 90.0]
    correct = np.array([[True, False], [False, False], [False, True], [False, False]])
    assert recall_by_group(correct, change, k=2) == {15.0: (0.5, 2), 90.0: (0.5, 2)}


def test_pose_change_of_named_poses_is_a_user_error():
    with pytest.raises(UserError, match="degrees"):
        pose_change(np.array(["left"]), np.array(["0"]))


def test_criterion_two_can_ask_for_several_factors_at_once():
    gallery = GALLERY.assign(session=["A", "A", "A", "A", "B"], illumination="01")
    queries = QUERIES.assign(session=["A", "B"], illumination="01")
    qk, gk = criterion_keys(queries, TARGETS, gallery, "pose", criterion=2, also="illumination,session")
    assert correct_matrix(np.array([[0, 1, 2, 3, 4]] * 2), qk, gk).tolist() == [
        [True, True, False, False, False],
        [False, False, False, False, True],
    ]
    assert criterion2_label(("expression", "session")) == "expression and session"
    with pytest.raises(UserError, match="'pose' is the edited factor"):
        criterion_keys(queries, TARGETS, gallery, "pose", criterion=2, also="pose")


def test_criterion2_defaults_to_light_then_expression_then_pose_and_is_criterion1_without_any():
    from retrieval.metrics import default_criterion2

    assert default_criterion2(["identity", "pose", "illumination"], "pose") == ("illumination",)
    assert default_criterion2(["identity", "pose", "illumination"], "illumination") == ("pose",)
    assert default_criterion2(["identity", "illumination"], "illumination") == ()
    faces = pd.DataFrame({"identity": ["a", "a", "b"], "illumination": ["L0", "L1", "L1"]})
    first = criterion_keys(faces.iloc[[0]], np.array(["L1"]), faces, "illumination", criterion=1)
    second = criterion_keys(faces.iloc[[0]], np.array(["L1"]), faces, "illumination", criterion=2)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert criterion2_label(()) == "no other factor"


def test_average_precision_counts_every_right_face_at_its_rank():
    from retrieval.metrics import average_precision

    correct = np.array([[True, False, True, False],   # right at ranks 1 and 3: (1 + 2/3) / 2
                        [False, True, False, False],  # one of its 2 right faces ranked, at 2: (1/2) / 2
                        [False, False, False, False]])  # nothing right to find
    ap = average_precision(correct, np.array([2, 2, 0]))
    np.testing.assert_allclose(ap, [(1 + 2 / 3) / 2, 0.25, 0.0])
    # two rankings with R@1 = 100 % both: the one ranking the second right face higher scores more
    assert average_precision(np.array([[True, True, False]]), np.array([2]))[0] > \
        average_precision(np.array([[True, False, True]]), np.array([2]))[0]
