"""The photo options `rbg generate` and `rbg query` share: whether to detect and align, and which face."""

from __future__ import annotations

import click

ALIGN_HELP = ("Detect the face (--detector) and crop it as the training faces were framed, or take the whole image as the face. "
              "Default: align image files unless they already have the model's size; FACESET:ROW faces as stored.")


DETECTOR_HELP = ("Face detector for photos: blaze (BlazeFace, frontal to full profile, each box read again by a small "
                 "face check that drops face-like textures, and the faces it scores lower let in where MTCNN's ONet is "
                 "sure of them; all three ship in this package), blaze-unchecked (BlazeFace alone), "
                 "hog (dlib's frontal detector, eye-aligned crops; the deep extra), haar (OpenCV's frontal and profile "
                 "cascades), cnn (dlib's CNN, slow), hog+haar (HOG, then the cascades for turned faces), hog+haar+cnn, "
                 "hog+blaze (HOG, then BlazeFace for turned faces). Measured: docs/data.md.")


MIN_FACE_HELP = ("The narrowest face to look for, in the photo's pixels [default: 16]. In a 640×480 photo 48 reads 5× fewer "
                 "windows (27 ms against 130) and finds fewer false faces, but misses more small faces (KDEF photos of "
                 "the val people: 88.8 R@1 against 90.8; docs/data.md). With --framing, the framing's own.")


def detector_option(command):
    """Add --detector NAME and --min-face PX to a command."""
    from facedata.detect import DETECTORS, DetectConfig

    command = click.option("--min-face", type=click.IntRange(min=8), default=None, help=MIN_FACE_HELP)(command)
    return click.option("--detector", type=click.Choice(list(DETECTORS)), default=DetectConfig.detector,
                        show_default=True, help=DETECTOR_HELP)(command)


def deep_detector_option(command):
    """Add --deep-detector NAME: the detector in front of dlib's descriptor in the Deep rows."""
    from facedata.detect import DETECTORS
    from retrieval.deep_descriptor import DEEP_DETECTOR

    return click.option("--deep-detector", type=click.Choice(list(DETECTORS)), default=DEEP_DETECTOR,
                        show_default=True, help="with --deep: the face detector in front of dlib's descriptor (as the "
                        "photo path's --detector; hog, dlib's own, describes cmu_faces best); a face it misses is "
                        "described whole and not fused")(command)


def face_options(command):
    """Add --align/--no-align, --face N and --detector NAME to a command."""
    command = detector_option(command)
    command = click.option("--face", type=int, default=1, show_default=True,
                           help="With several faces in a photo: the N-th largest (1 = the largest).")(command)
    return click.option("--align/--no-align", default=None, help=ALIGN_HELP)(command)
