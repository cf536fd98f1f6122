"""Calibrate SynthPIE's identity spread against the paper's 2-step raw-image baseline (Table 2, row 1).

For each setting it renders the `paper` preset's people followed by `--val-people` more, fits the
pose classifier on the preset's train people (the benchmark's: 0–89), runs 10,000 random queries over the gallery of
the extra people — the val split, never the benchmark's test people (ids 100–248) — and prints
recall@1/5/20 under criterion 1 next to the paper's 11.5 / 25.9 / 43.2. The val gallery has as many
people as the test split (149) by default, so its recall compares with the paper's. Usage:
    python benchmarks/calibrate_synthpie.py --spread 0.5 --spread 1.0 --out runs/calibration.json
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import click

from facedata.faceset import FaceSet
from facedata.provenance import provenance
from facedata.synth import SynthConfig, render_faceset, synth_config
from retrieval.paper_figures import TABLE2_RECALL
from retrieval.protocol import sample_queries, score
from retrieval.two_step import fit_pose_filter, rank_by_pixels

PAPER = TABLE2_RECALL[("2-step retrieval", "image")]
TEST_PEOPLE = 149  # the paper preset's test split, the size of gallery the paper's figures are for


def calibration_config(val_people: int = TEST_PEOPLE, **overrides) -> SynthConfig:
    """The paper preset with `val_people` further people as its val split, after every benchmark person.

    People depend only on (seed, index), so ids 0–248 are the benchmark's own and the val people
    (249 on) are in no benchmark; the train split holds all 249, of which calibration fits on the
    preset's own train people (`paper_train_people`).
    """
    paper = synth_config("paper", **overrides)
    people = paper.identities + val_people
    return replace(paper, identities=people, train_identities=people, val_identities=val_people)


def paper_train_people() -> int:
    """How many people the paper preset's train split holds (its train side less its val people)."""
    paper = synth_config("paper")
    return paper.train_identities - paper.val_identities


def calibration_splits(faces: FaceSet, train_people: int) -> tuple[FaceSet, FaceSet]:
    """(the first `train_people` train identities, which fit the pose classifier; the val split, the gallery)."""
    train = faces.split("train")
    return train.filter(identity=train.identities()[:train_people]), faces.split("val")


@click.command()
@click.option("--spread", "spreads", type=float, multiple=True, required=True, help="identity_spread values to try")
@click.option("--ambient", type=float, default=None, help="override the ambient light level")
@click.option("--light-range", type=float, default=None, help="override the largest flash azimuth (degrees)")
@click.option("--queries", type=int, default=10_000, show_default=True)
@click.option("--val-people", type=click.IntRange(min=2), default=TEST_PEOPLE, show_default=True,
              help="people rendered after the preset's to form the val gallery")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="write the results as JSON")
def main(spreads, ambient, light_range, queries, val_people, seed, out):
    rows = []
    print(f"{'spread':>7} {'R@1':>6} {'R@5':>6} {'R@20':>6} {'pose acc':>8} {'render s':>8}   paper {PAPER}")
    for spread in spreads:
        config = calibration_config(val_people, identity_spread=spread, ambient=ambient, light_range=light_range, seed=seed)
        t0 = time.perf_counter()
        faces = render_faceset(config, progress=False)
        render_s = time.perf_counter() - t0
        train, gallery = calibration_splits(faces, paper_train_people())
        qs = sample_queries(gallery, "pose", queries, seed=seed)
        pose_filter = fit_pose_filter(train, gallery, qs)
        report, _ = score(rank_by_pixels(gallery, qs, pose_filter.gallery_pred, k=20), qs, gallery, criterion=1)
        r = report.percent()
        rows.append({"identity_spread": spread, "ambient": config.ambient, "light_range": config.light_range,
                     "gallery": f"val: ids {gallery.identities()[0]}..{gallery.identities()[-1]}", "recall": r, "pose_accuracy": pose_filter.accuracy, "render_seconds": render_s})
        print(f"{spread:7.3f} {r[1]:6.1f} {r[5]:6.1f} {r[20]:6.1f} {100 * pose_filter.accuracy:8.1f} {render_s:8.1f}", flush=True)
    if out:
        with open(out, "w") as fh:
            json.dump({"paper": PAPER, "rows": rows, "provenance": provenance(seed=seed)}, fh, indent=2)


if __name__ == "__main__":
    main()
