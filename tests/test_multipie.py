"""Multi-PIE reader: the distribution's tree in, the paper's 7-pose × 20-light FaceSet out (§4.1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fakes import split_identities
from click.testing import CliRunner
from PIL import Image

from facedata.errors import DataError
from facedata.faceset import FaceSet
from facedata.imageio import EyesChinTemplate, align_on_eyes_chin
from facedata.multipie import MULTIPIE_CAMERAS, MULTIPIE_POSES, read_multipie
from facedata.pairs import expected_pair_count, make_pairs
from rbg.cli import cli

SUBJECTS = ("001", "002", "005")
ILLUMS = ("00", "07")
FRAME = (48, 64)  # (H, W), a 640×480 frame scaled down by 10


def gray_value(subject: int, pose: int, illum: int) -> int:
    return 40 + 30 * subject + 3 * pose + illum


def camera_file(root: Path, subject: str, camera: str, illum: str, code: str | None = None) -> Path:
    folder = root / "session01" / "multiview" / subject / "01" / camera
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{subject}_01_01_{code or camera.replace('_', '')}_{illum}.png"


def build_tree(root: Path, subjects=SUBJECTS, illums=ILLUMS, other_cameras=("11_0",)) -> Path:
    """A Multi-PIE tree: every file a flat gray whose level encodes (subject, pose, illumination)."""
    for s, subject in enumerate(subjects):
        for p, camera in enumerate(MULTIPIE_CAMERAS):
            for illum in illums:
                value = gray_value(s, p, int(illum))
                Image.new("RGB", FRAME[::-1], (value, value, value)).save(camera_file(root, subject, camera, illum))
        for camera in other_cameras:
            for illum in illums:
                Image.new("RGB", FRAME[::-1], (9, 9, 9)).save(camera_file(root, subject, camera, illum))
    return root


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    return build_tree(tmp_path / "mpie")


def test_seven_cameras_become_signed_yaw_poses_and_twenty_light_vocabulary(tree):
    faces = read_multipie(tree, size=8, train_identities=2, progress=False)
    assert len(faces) == 3 * 7 * 2
    assert faces.vocabulary("pose") == ("-45", "-30", "-15", "0", "+15", "+30", "+45")
    assert len(faces.vocabulary("illumination")) == 20
    by_source = dict(zip(faces.faces["source"], faces.faces["pose"]))
    assert by_source["001/01/08_0/001_01_01_080_00.png"] == "-45"
    assert by_source["001/01/05_1/001_01_01_051_07.png"] == "0"
    assert by_source["005/01/19_0/005_01_01_190_07.png"] == "+45"
    assert faces.image_size == (8, 8)


def test_other_cameras_are_skipped_and_counted(tree):
    faces = read_multipie(tree, size=8, train_identities=2, progress=False)
    assert faces.info.extra["skipped_cameras"] == {"11_0": 3 * 2}
    assert not faces.faces["source"].str.contains("11_0").any()


def test_identity_is_subject_id_and_first_subjects_by_id_are_train(tree):
    faces = read_multipie(tree, size=8, train_identities=2, progress=False)
    assert faces.identities() == ["001", "002", "005"]
    split = faces.faces.groupby("identity")["split"].agg(set).to_dict()
    assert split == {"001": {"train"}, "002": {"val"}, "005": {"test"}}  # val: the last of the train side
    faces = read_multipie(tree, size=8, train_identities=2, val_identities=0, progress=False)
    assert faces.split("train").identities() == ["001", "002"] and not faces.has_split("val")


def test_pixels_are_the_grayscale_of_their_own_file(tree):
    faces = read_multipie(tree, size=8, train_identities=2, progress=False)
    for i in range(len(faces)):
        row = faces.faces.iloc[i]
        s, p = SUBJECTS.index(row["identity"]), MULTIPIE_POSES.index(row["pose"])
        assert np.abs(faces.image(i).astype(int) - gray_value(s, p, int(row["illumination"]))).max() <= 1


def test_pose_pairs_of_the_read_set_follow_the_protocol_count(tree):
    faces = read_multipie(tree, size=8, train_identities=2, val_identities=0, progress=False)
    assert len(make_pairs(faces.split("train"), "pose")) == expected_pair_count(2, len(ILLUMS), 7)


def test_a_missing_camera_folder_leaves_a_partial_grid(tmp_path):
    root = build_tree(tmp_path / "mpie", subjects=("001", "002"), illums=("00",), other_cameras=())
    for f in (root / "session01/multiview/002/01/19_0").iterdir():
        f.unlink()
    faces = read_multipie(root, size=8, train_identities=1, progress=False)
    assert len(faces) == 13
    assert (faces.faces.query("identity == '002'")["pose"] != "+45").all()


def dots_frame(points: list[tuple[float, float]], hw=(160, 200)) -> np.ndarray:
    frame = np.zeros(hw, dtype=np.uint8)
    for x, y in points:
        frame[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = 255
    return frame


def blob_centres(image: np.ndarray, split_row: float) -> tuple[np.ndarray, np.ndarray]:
    """Centroids (x, y) of the bright pixels above and below `split_row`."""
    ys, xs = np.nonzero(image > 60)
    weights = image[ys, xs].astype(float)
    upper, lower = ys < split_row, ys >= split_row
    centre = lambda m: np.array([np.average(xs[m], weights=weights[m]), np.average(ys[m], weights=weights[m])])
    return centre(upper), centre(lower)


def test_eyes_chin_alignment_moves_eye_midpoint_and_chin_to_the_template():
    # A face tilted by ~20°, eyes at 60 px apart, chin 90 px below: the chin and the eyes' midpoint land
    # where the template says, whatever the tilt and scale.
    eye_a, eye_b, chin = (80.0, 60.0), (136.0, 80.0), (78.0, 150.0)
    out = align_on_eyes_chin(dots_frame([eye_a, eye_b, chin]), eye_a, eye_b, chin, 64)
    template = EyesChinTemplate()
    eyes, chin_found = blob_centres(out, split_row=0.62 * 64)
    assert np.allclose(eyes + 0.5, np.array(template.eyes_mid) * 64, atol=1.5)
    assert np.allclose(chin_found + 0.5, np.array(template.chin) * 64, atol=1.5)


def write_landmarks(path: Path, rows: list[tuple]) -> Path:
    lines = ["file,left_eye_x,left_eye_y,right_eye_x,right_eye_y,chin_x,chin_y"]
    lines += [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_landmark_rows_without_illumination_apply_to_every_flash_of_that_camera(tmp_path):
    root = build_tree(tmp_path / "mpie", subjects=("001", "002"), other_cameras=())
    rows = [(f"{s}_01_01_{c.replace('_', '')}", 20, 18, 44, 18, 32, 40) for s in ("001", "002") for c in MULTIPIE_CAMERAS]
    # A row naming one file wins over its camera's row: here it points outside the frame, so that face is black.
    rows.append(("session01/multiview/001/01/08_0/001_01_01_080_07.png", 1000, 18, 1024, 18, 1012, 40))
    faces = read_multipie(root, size=16, train_identities=1, progress=False,
                          landmarks=write_landmarks(tmp_path / "lm.csv", rows))
    assert len(faces) == 2 * 7 * 2
    assert faces.info.extra["alignment"].startswith("eyes+chin")
    sources = list(faces.faces["source"])
    outside = sources.index("001/01/08_0/001_01_01_080_07.png")
    inside = sources.index("001/01/08_0/001_01_01_080_00.png")
    assert faces.image(outside).max() == 0
    assert np.abs(faces.image(inside).astype(int) - gray_value(0, 0, 0)).max() <= 1


def test_missing_landmarks_for_a_file_name_it_and_the_landmark_file(tmp_path, tree):
    rows = [("001_01_01_080", 20, 18, 44, 18, 32, 40)]
    with pytest.raises(DataError, match=r"001_01_01_130_00\.png: no landmarks .*lm\.csv"):
        read_multipie(tree, size=8, train_identities=2, progress=False, landmarks=write_landmarks(tmp_path / "lm.csv", rows))


def test_landmark_file_without_its_columns_is_refused(tmp_path, tree):
    (tmp_path / "lm.csv").write_text("file,x,y\na,1,2\n")
    with pytest.raises(DataError, match=r"lm\.csv: landmark file lacks column\(s\) left_eye_x"):
        read_multipie(tree, size=8, train_identities=2, progress=False, landmarks=tmp_path / "lm.csv")


def test_camera_code_that_disagrees_with_its_folder_is_a_data_error_naming_the_file(tree):
    bad = camera_file(tree, "001", "14_0", "03", code="130")
    Image.new("RGB", FRAME[::-1]).save(bad)
    with pytest.raises(DataError, match=r"001_01_01_130_03\.png: camera code 130 in the name, but the folder is 14_0"):
        read_multipie(tree, size=8, train_identities=2, progress=False)


def test_unknown_illumination_code_is_a_data_error_naming_the_file(tree):
    Image.new("RGB", FRAME[::-1]).save(camera_file(tree, "002", "05_1", "20"))
    with pytest.raises(DataError, match=r"002_01_01_051_20\.png: unknown illumination code 20"):
        read_multipie(tree, size=8, train_identities=2, progress=False)


def test_corrupt_png_is_a_data_error_naming_it(tree):
    camera_file(tree, "005", "04_1", "07").write_bytes(b"\x89PNG\r\n\x1a\n garbage bytes")
    with pytest.raises(DataError, match=r"005_01_01_041_07\.png: unreadable or corrupt image"):
        read_multipie(tree, size=8, train_identities=2, progress=False)


def test_folder_without_multiview_or_protocol_images_is_refused(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        read_multipie(tmp_path / "absent", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no session01/multiview folder"):
        read_multipie(tmp_path / "empty", progress=False)
    (tmp_path / "bare" / "session01" / "multiview" / "001" / "01" / "11_0").mkdir(parents=True)
    with pytest.raises(DataError, match="no images of the 7 protocol cameras"):
        read_multipie(tmp_path / "bare", progress=False)


def test_cli_import_multipie_writes_a_faceset_and_prints_counts(tmp_path, tree):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["data", "import", "multipie", str(tree), "--out", str(out),
                                      "--size", "8", "--train-identities", "2"])
    assert result.exit_code == 0, result.output
    assert "42 images of 8×8, 3 identities" in result.stdout
    assert split_identities(result.stdout) == {"train": 1, "val": 1, "test": 1}
    assert "-45: 6," in result.stdout
    assert "skipped (other cameras): 11_0 6" in result.stdout
    written = FaceSet.open(out)
    assert len(written) == 42 and written.info.provenance["command"]


def test_cli_corrupt_image_exits_2_with_one_error_line_and_writes_nothing(tmp_path, tree):
    camera_file(tree, "001", "05_0", "00").write_bytes(b"not a png at all")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["data", "import", "multipie", str(tree), "--out", str(out),
                                      "--train-identities", "2"])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "001_01_01_050_00.png: unreadable or corrupt image" in errors[0]
    assert "Traceback" not in result.output
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_a_train_count_not_below_the_subject_count_is_refused_before_reading(tree):
    camera_file(tree, "001", "05_1", "00").write_bytes(b"corrupt, but never read")
    with pytest.raises(DataError, match="3 subjects found; cannot put 100 of them in train"):
        read_multipie(tree, progress=False)
    with pytest.raises(DataError, match="cannot hold out 2 of the 2 train subjects for validation"):
        read_multipie(tree, train_identities=2, val_identities=2, progress=False)
