"""Calibrate SynthPIE's identity spread against the paper's 2-step raw-image baseline (Table 2, row 1).

For each setting it renders the `paper` preset, fits the pose classifier on the train identities,
runs 10,000 random queries over the test gallery and prints recall@1/5/20 under criterion 1 next to
the paper's 11.5 / 25.9 / 43.2. Usage:
    python benchmarks/calibrate_synthpie.py --spread 0.5 --spread 1.0 --out runs/calibration.json
"""

from __future__ import annotations

import json
import time

import click

from facedata.provenance import provenance
from facedata.synth import render_faceset, synth_config
from retrieval.paper_figures import TABLE2_RECALL
from retrieval.protocol import sample_queries, score
from retrieval.two_step import fit_pose_filter, rank_by_pixels

PAPER = TABLE2_RECALL[("2-step retrieval", "image")]


@click.command()
@click.option("--spread", "spreads", type=float, multiple=True, required=True, help="identity_spread values to try")
@click.option("--ambient", type=float, default=None, help="override the ambient light level")
@click.option("--light-range", type=float, default=None, help="override the largest flash azimuth (degrees)")
@click.option("--queries", type=int, default=10_000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="write the results as JSON")
def main(spreads, ambient, light_range, queries, seed, out):
    rows = []
    print(f"{'spread':>7} {'R@1':>6} {'R@5':>6} {'R@20':>6} {'pose acc':>8} {'render s':>8}   paper {PAPER}")
    for spread in spreads:
        config = synth_config("paper", identity_spread=spread, ambient=ambient, light_range=light_range, seed=seed)
        t0 = time.perf_counter()
        faces = render_faceset(config, progress=False)
        render_s = time.perf_counter() - t0
        train, gallery = faces.split("train"), faces.split("test")
        qs = sample_queries(gallery, "pose", queries, seed=seed)
        pose_filter = fit_pose_filter(train, gallery, qs)
        report, _ = score(rank_by_pixels(gallery, qs, pose_filter, k=20), qs, gallery, criterion=1)
        r = report.percent()
        rows.append({"identity_spread": spread, "ambient": config.ambient, "light_range": config.light_range,
                     "recall": r, "pose_accuracy": pose_filter.accuracy, "render_seconds": render_s})
        print(f"{spread:7.3f} {r[1]:6.1f} {r[5]:6.1f} {r[20]:6.1f} {100 * pose_filter.accuracy:8.1f} {render_s:8.1f}", flush=True)
    if out:
        with open(out, "w") as fh:
            json.dump({"paper": PAPER, "rows": rows, "provenance": provenance(seed=seed)}, fh, indent=2)


if __name__ == "__main__":
    main()
