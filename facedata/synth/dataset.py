"""Render a whole SynthPIE FaceSet from a SynthConfig, identity by identity, with a progress bar."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pandas as pd
from tqdm import tqdm

from facedata.faceset import FaceSet
from facedata.provenance import provenance
from facedata.splits import split_of
from facedata.synth.presets import SynthConfig
from facedata.synth.render import frame_for, frontal_illumination, light_rig, render_identity

SOURCE = "synthpie"


def identity_label(index: int) -> str:
    """The identity column's value for identity `index`: "id0000", "id0001", ..."""
    return f"id{index:04d}"


def faces_table(config: SynthConfig) -> pd.DataFrame:
    """One row per image in render order (identity, expression, accessory, occluded, pose, illumination)."""
    accessory_varied = config.accessories != ("none",)
    occlusion_varied = config.occlusion != ("no",)
    expression_varied = config.expressions != ("neutral",)
    rows = []
    for i, expression, accessory, occluded, pose, light in itertools.product(
        range(config.identities), config.expressions, config.accessories, config.occlusion, config.pose_labels,
        config.illumination_names,
    ):
        row = {"identity": identity_label(i), "pose": pose, "illumination": light}
        if expression_varied:
            row["expression"] = expression
        if accessory_varied:
            row["accessory"] = accessory
        if occlusion_varied:
            row["occluded"] = occluded
        row["split"] = split_of(i, config.train_identities, config.val_identities)
        row["source"] = SOURCE
        rows.append(row)
    return pd.DataFrame(rows)


def render_faceset(config: SynthConfig, progress: bool = True) -> FaceSet:
    """Render every image `config` asks for into an in-memory FaceSet (write it with `.write(path)`).

    faceset.json's extra records the full config, the render time and the reference illumination
    (the most frontal flash) that contact sheets show by default.
    """
    start = time.perf_counter()
    frame = frame_for(config)
    rig = light_rig(config, frame)
    per_identity = config.image_count // config.identities
    images = np.empty((config.image_count, config.image_size, config.image_size), dtype=np.uint8)
    bar = tqdm(range(config.identities), desc=f"rendering {config.name}", unit="identity", disable=not progress, leave=False)
    for i in bar:
        block = render_identity(config, i, frame, rig)
        images[i * per_identity : (i + 1) * per_identity] = block.reshape(per_identity, config.image_size, config.image_size)
    seconds = time.perf_counter() - start
    factors = {"pose": config.pose_labels, "illumination": rig.labels}
    if config.accessories != ("none",):
        factors["accessory"] = config.accessories
    if config.occlusion != ("no",):
        factors["occluded"] = config.occlusion
    if config.expressions != ("neutral",):
        factors["expression"] = config.expressions
    factors["pose"] = tuple(sorted(config.pose_labels, key=float))
    return FaceSet.from_arrays(
        images,
        faces_table(config),
        name=config.name,
        factors=factors,
        provenance=provenance(seed=config.seed),
        extra={
            "synth_config": config.to_json(),
            "render_seconds": round(seconds, 3),
            "reference": {"illumination": frontal_illumination(rig), "pose": "0" if "0" in config.pose_labels else config.pose_labels[0]},
        },
    )
