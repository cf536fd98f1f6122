"""Face-free wallpapers: one picture per design, validation and training packages kept apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image


def test_a_design_s_sizes_share_one_key_and_a_readable_name():
    from wallpapers import design_key, design_name

    plasma = "usr/share/wallpapers/Kay/contents/images/{}.png"
    assert design_key(plasma.format("5120x2880")) == design_key(plasma.format("1080x1920"))
    assert design_name(design_key(plasma.format("5120x2880"))) == "Kay"
    dark = design_key("usr/share/wallpapers/Kay/contents/images_dark/5120x2880.png")
    assert dark != design_key(plasma.format("5120x2880")) and design_name(dark) == "Kay-dark"
    mate = "usr/share/backgrounds/mate/abstract/Elephants{}.jpg"
    assert design_key(mate.format("")) == design_key(mate.format("_3840x2160")) == design_key(mate.format("_5640x3172"))
    sway = "usr/share/backgrounds/sway/Sway_Wallpaper_Blue_{}.png"
    assert design_key(sway.format("2048x1536")) == design_key(sway.format("768x1024_Portrait"))
    assert design_name(design_key("usr/share/backgrounds/gnome/grid-d.webp")) == "gnome-grid-d"


def test_each_design_is_read_once_from_its_largest_landscape_file(tmp_path):
    from wallpapers import package_designs

    images = tmp_path / "usr/share/wallpapers/Kay/contents/images"
    images.mkdir(parents=True)
    Image.new("L", (1080, 1920)).save(images / "1080x1920.png")
    Image.new("L", (1280, 800)).save(images / "1280x800.png")
    Image.new("L", (2560, 1600)).save(images / "2560x1600.png")
    Image.new("L", (64, 64)).save(tmp_path / "usr/share/wallpapers/icon.png")  # too small to be a wallpaper
    (tmp_path / "usr/share/wallpapers/notes.png").write_text("not a picture")
    designs = package_designs(tmp_path)
    assert [path.name for path in designs.values()] == ["2560x1600.png"]


def test_validation_and_training_wallpapers_are_different_packages():
    from photo_scenes import VALIDATION_WALLPAPERS

    from facedata.face_check_train import TRAINING_WALLPAPERS

    assert VALIDATION_WALLPAPERS and TRAINING_WALLPAPERS and not set(VALIDATION_WALLPAPERS) & set(TRAINING_WALLPAPERS)


@pytest.fixture
def folder(tmp_path) -> Path:
    """A folder as benchmarks/wallpapers.py writes it: one validation and one training package."""
    rows = []
    for package, name in (("gnome-backgrounds", "grid"), ("mate-backgrounds", "leaf")):
        (tmp_path / package).mkdir()
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (480, 640), dtype=np.uint8)).save(tmp_path / package / f"{name}.png")
        rows.append({"package": package, "name": name})
    pd.DataFrame(rows).to_csv(tmp_path / "index.csv", index=False)
    return tmp_path


def test_the_validation_sets_read_only_the_validation_packages(folder):
    from photo_scenes import at_scales, wallpaper_pictures

    from facedata.face_check_train import training_wallpapers

    pictures = wallpaper_pictures(folder)
    assert [name for name, _ in pictures] == ["gnome-backgrounds/grid"] and pictures[0][1].shape == (480, 640)
    assert [p.shape for p in training_wallpapers(folder)] == [(480, 640)]
    scaled = at_scales(pictures)
    assert [name for name, _ in scaled] == ["gnome-backgrounds/grid ×0.5", "gnome-backgrounds/grid ×1", "gnome-backgrounds/grid ×2"]
    assert scaled[2][1].shape == (960, 1280)


def test_a_folder_without_an_index_is_refused_naming_it(tmp_path):
    from photo_scenes import wallpaper_pictures

    from facedata.face_check_train import training_wallpapers

    for read in (wallpaper_pictures, training_wallpapers):
        with pytest.raises(SystemExit, match=str(tmp_path)):
            read(tmp_path)


def test_a_training_crop_is_a_photo_or_webcam_frame_of_a_wallpaper(folder):
    from facedata.face_check_train import picture_size, training_wallpapers, wallpaper_crop

    rng = np.random.default_rng(0)
    for webcam in (True, False):
        hw, _ = picture_size(rng, webcam)
        crop = wallpaper_crop(rng, hw, training_wallpapers(folder))
        assert crop.shape == hw and crop.dtype == np.uint8 and crop.std() > 0
