"""The photo path end to end: queries that are photos, not crops, against the crop-based bench's gallery.

    python benchmarks/photo_path.py --model runs/kdef-skip --data runs/kdef32 --photos runs/kdef64 \
        --queries 1000 --out runs/photo_path

Each query face (the test people's, drawn as `rbg bench` draws them, seeded) is pasted at a random
scale and place into a 640×480 background (photo_scenes: scikit-image pictures and textures, seeded),
then goes the way a user's photo goes: the detector (`--detector`, the photo path's default), the
largest face, a crop, generation and the search. The crop is taken from the detection box with a
framing per detector and kind (frontal, profile-left, profile-right) fitted on the train people's
faces, pasted and detected the same way: the median offset and size of the dataset's own crop
relative to the box (facedata.align.BoxFraming). The same queries as crops (the dataset's own) give
the crop-based figures in the same run.

Both sides search the same way: "ours, all poses, classifier pose" (query and gallery faces generated
in every pose, refiner features compared view by view, among gallery faces the CNN pose classifier,
fitted on the train people, puts in the target pose). A query whose photo yields no face is a miss.
Reported per source pose: the detection rate, then criterion-1 R@1/5/20 for photos and crops.
With --reframe the posed crop is taken again where a regressor reads it off (retrieval.reframe); with
--spread that crop is also taken moved six ways, and a gallery face's distance is the mean over the
seven crops ("spread") or the smallest ("nearest"): what is left of the framing error is searched over.
--split val measures the val people, to choose on.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from facedata.align import BoxFraming, box_transform
from facedata.blazeface import SEARCHES
from facedata.detect import DETECTORS, DetectConfig, detect_config, detect_faces
from facedata.faceset import FaceSet
from facedata.imageio import crop_square
from facedata.provenance import provenance
from generator.inference import Generator
from index.pose_classifier import PoseClassifierConfig
from photo_scenes import found_at, scenes, write_report
from facedata.faceset import same_faces_at_resolution
from retrieval.multi_view import rank_among, view_distances
from retrieval.protocol import sample_queries, score
from retrieval.photo_framing import fit_framings, framing_key, spread_pattern
from retrieval.reframe import ReframeConfig, Reframer, fit_reframer
from retrieval.two_step import fit_pose_filter

KS = (1, 5, 20)


def photo_crops(faces: np.ndarray, framings: dict[str, BoxFraming], config: DetectConfig, size: tuple[int, int],
                seed: int, classifier=None, reframer: Reframer | None = None, spread: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str | None]]:
    """Each face pasted into a photo, detected and cropped: (crops (n, h, w) uint8 framed by detector and kind,
    crops framed by detector, kind and pose (the pose `classifier` reads on the first crop; the first crop
    where no framing of that pose was fitted, or without a classifier), those crops taken again where the
    `reframer` reads them off (the posed crops without one), found (n,) bool, right (n,) bool: the largest
    face is the pasted one, framing key per face or None). With `spread` (k, 3), the third item is (n, k, h, w):
    the last crop moved by each row of `spread` (retrieval.reframe.Reframer.corrected's error, undone)."""
    crops = np.zeros((len(faces), *size), dtype=np.uint8)
    posed = np.zeros_like(crops)
    reframed = np.zeros_like(crops) if spread is None else np.zeros((len(faces), len(spread), *size), dtype=np.uint8)
    found = np.zeros(len(faces), dtype=bool)
    right = np.zeros(len(faces), dtype=bool)
    keys: list[str | None] = [None] * len(faces)
    fallback = BoxFraming()
    aspect = faces.shape[1] / faces.shape[2]
    for i, scene in enumerate(tqdm(scenes(faces, seed), desc="photo queries: detect + crop", unit="photo")):
        detected = detect_faces(scene.image, config)
        if not detected:
            continue
        face = detected[0]  # the largest, as `rbg query` takes it
        found[i], right[i], keys[i] = True, found_at(face.box, scene.truth), framing_key(face)
        framing = framings.get(keys[i], fallback)
        transform = box_transform(face, framing=framing, aspect=aspect)
        crops[i] = posed[i] = crop_square(scene.image, transform, size)
        if classifier is not None:
            pose = str(classifier.predict(crops[i][None])[0])
            if f"{keys[i]}@{pose}" in framings:
                keys[i] = f"{keys[i]}@{pose}"
                transform = box_transform(face, framing=framings[keys[i]], aspect=aspect)
                posed[i] = crop_square(scene.image, transform, size)
        if reframer is not None:
            transform = Reframer.corrected(transform, reframer.errors(posed[i][None])[0])
        if spread is None:
            reframed[i] = crop_square(scene.image, transform, size)
        else:
            reframed[i] = [crop_square(scene.image, Reframer.corrected(transform, move), size) for move in spread]
    return crops, posed, reframed, found, right, keys


def per_pose(edit_values: np.ndarray, found: np.ndarray, right: np.ndarray, correct: dict[str, np.ndarray]) -> list[dict]:
    """Rows per source value and one for all: detection rate and criterion-1 recall@K of each query kind."""
    rows = []
    values = sorted(set(edit_values), key=lambda v: (float(v) if _number(v) else 0.0, v))
    for value in [*values, "all"]:
        mask = np.ones(len(edit_values), bool) if value == "all" else edit_values == value
        row = {"source": value, "queries": int(mask.sum()), "detected": round(100 * float(found[mask].mean()), 1),
               "detected_right_face": round(100 * float(right[mask].mean()), 1)}
        for name, hits in correct.items():
            for k in KS:
                row[f"{name}_r{k}"] = round(100 * float(hits[mask, :k].any(axis=1).mean()), 1)
        rows.append(row)
    return rows


def _number(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


def markdown(record: dict) -> str:
    name = record.get("set") or Path(record["data"]).name
    posed = "posed_r1" in record["per_pose"][0]
    reframed = "reframed_r1" in record["per_pose"][0]
    spread = "spread_r1" in record["per_pose"][0]
    lines = [f"`{name}`: {record['queries']:,} queries as photos (detector {record['detector']}) and as the dataset's "
             f"crops; criterion-1 recall in %, ours, all poses, classifier pose. Detection and crop: "
             f"{record['ms_per_photo_detect_and_crop']:,.0f} ms a 640×480 photo (2 cores, shared)."
             + (" Photo crops framed from the box by detector and kind, and (posed) also by the pose the CNN pose"
                " classifier reads on that first crop." if posed else "")
             + (" Reframed: the posed crop taken again where a regressor trained on the train people's photos reads"
                " it off." if reframed else "")
             + (f" Spread and nearest: the reframed crop also moved 6 ways (± {record['spread'][0]} sides across and "
                f"down, ± {record['spread'][1]} in log-size), each gallery face's distance the mean over the 7 crops"
                f" (spread) or the smallest (nearest)." if spread else "")
             + (" Framing: the same photos cropped by a saved photo framing (rbg framing fit), as `rbg query"
                " --framing` crops them, each gallery face at its nearest crop." if "framing" in record else "")
             + (f" Gallery and queries: the {record['split']} people." if record.get("split", "test") != "test" else ""), ""]
    best = "nearest" if spread else "reframed" if reframed else "posed" if posed else "photo"
    shown = (["photo", "posed", "reframed"][: 3 if reframed else 2 if posed else 1] + (["spread", "nearest"] if spread else [])
             + (["framing"] if "framing_r1" in record["per_pose"][0] else []))
    lines += ["| source pose | queries | detected % | " + " | ".join(f"{k} R@1" for k in shown)
              + f" | R@5 | R@20 | crop R@1 | R@5 | R@20 | {best} / crop R@1 |",
              "|---|---|---|" + "---|" * len(shown) + "---|---|---|---|---|---|"]
    for r in record["per_pose"]:
        name = f"**{r['source']}**" if r["source"] == "all" else r["source"]
        ratio = f"{r[f'{best}_r1'] / r['crop_r1']:.2f}" if r["crop_r1"] else "—"
        middle = " | ".join(str(r[f"{k}_r1"]) for k in shown) + f" | {r[f'{best}_r5']} | {r[f'{best}_r20']}"
        lines.append(f"| {name} | {r['queries']} | {r['detected']} | {middle} | "
                     f"{r['crop_r1']} | {r['crop_r5']} | {r['crop_r20']} | {ratio} |")
    return "\n".join(lines)


def run(args) -> dict:
    started = time.perf_counter()
    faces = FaceSet.open(args.data)
    photos = same_faces_at_resolution(faces, args.photos, "--photos")
    generator = Generator.load(args.model)
    edit = generator.edit_factor
    config = replace(detect_config(args.detector, args.min_face), blaze_search=args.blaze_search)
    train_rows = np.flatnonzero((faces.faces["split"] == "train").to_numpy())
    rng = np.random.default_rng(args.seed)
    fit_rows = np.sort(rng.choice(train_rows, size=min(args.fit_faces, len(train_rows)), replace=False))
    framings, framing_record = fit_framings(photos.images[fit_rows], faces.faces[edit].to_numpy()[fit_rows], config,
                                            args.seed)

    reframer, reframe_record = None, None
    if args.reframe:
        reframer, reframe_record = fit_reframer(photos.images[train_rows], faces.images.shape[1:],
                                                ReframeConfig(seed=args.seed), args.reframe_copies, args.seed)

    gallery, train = faces.split(args.split), faces.split("train")
    queries = sample_queries(gallery, edit, args.queries, seed=args.seed)
    pose_filter = fit_pose_filter(train, gallery, queries, PoseClassifierConfig(model="cnn", seed=args.seed),
                                  Path(args.cache) if args.cache else None)
    gallery_rows = np.flatnonzero((faces.faces["split"] == args.split).to_numpy())
    asked = np.unique(queries.positions)  # each query face is photographed once
    t0 = time.perf_counter()
    spread = spread_pattern(*args.spread) if args.spread else None
    crops, posed, reframed, found, right, keys = photo_crops(photos.images[gallery_rows[asked]], framings, config,
                                                             faces.images.shape[1:], seed=args.seed + 1,
                                                             classifier=pose_filter.classifier, reframer=reframer,
                                                             spread=spread)
    detect_seconds = time.perf_counter() - t0
    photo_of = {int(p): i for i, p in enumerate(asked)}
    photo_index = np.array([photo_of[int(p)] for p in queries.positions])

    kinds = ("photo", "posed", "reframed") if reframer is not None else ("photo", "posed")
    moved = [] if spread is None else [reframed[:, k] for k in range(len(spread))]
    if spread is not None:
        reframed = moved[0]  # the pattern's first move is none
    shared = spread is not None and "reframed" in kinds  # then the reframed crops are the first move's: generated once
    sets = [crops, posed, reframed][: len(kinds)] + moved[int(shared):]
    images = np.concatenate([gallery.images, *sets])
    g, q = len(gallery), len(queries)
    every, _ = view_distances(generator, images, np.concatenate([queries.positions, *(g + i * len(asked) + photo_index
                                                                                    for i in range(len(sets)))]),
                              None, batch_size=args.batch_size)
    blocks = [every[part * q : (part + 1) * q, :g] for part in range(1 + len(sets))]
    names = ("crop", *kinds)
    ranked = {name: rank_among(blocks[part], pose_filter.gallery_pred, queries.targets, max(KS))
              for part, name in enumerate(names)}
    if spread is not None:  # the query's distance to each gallery face: the mean, or the smallest, over the moved crops
        kinds = (*kinds, "spread", "nearest")
        each = ([blocks[names.index("reframed")]] if shared else []) + blocks[len(names):]
        ranked["spread"] = rank_among(np.mean(each, axis=0), pose_filter.gallery_pred, queries.targets, max(KS))
        ranked["nearest"] = rank_among(np.min(each, axis=0), pose_filter.gallery_pred, queries.targets, max(KS))
    for name in kinds:
        ranked[name][~found[photo_index]] = -1  # no face found: nothing to search with
    framed = None
    if args.framing:  # the commands' own photo path (rbg query --framing): its crops, each face at its nearest
        framed = framing_ranking(args, generator, gallery, queries, photos.images[gallery_rows[asked]], photo_index,
                                 pose_filter.gallery_pred)
        ranked["framing"] = framed["ranked"]
    correct = {name: score(rows, queries, gallery, 1, KS)[1] for name, rows in ranked.items()}
    source = gallery.faces[edit].to_numpy().astype(str)[queries.positions]
    record = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "model": str(args.model), "data": str(args.data), "set": faces.info.name, "photos": str(args.photos),
        "detector": args.detector, "detect_config": asdict(config), "seed": args.seed, "split": args.split,
        **({"spread": list(args.spread)} if args.spread else {}),
        "queries": len(queries), "query_photos": len(asked), "method": "ours, all poses, classifier pose",
        "pose_classifier_accuracy": round(100 * pose_filter.accuracy, 1),
        "framings": framing_record, "framing_fit_faces": len(fit_rows),
        "per_pose": per_pose(source, found[photo_index], right[photo_index], correct),
        "framing_used": pd.Series([k or "none" for k in keys]).value_counts().to_dict(),
        "posed": "photo crops reframed by the pose the CNN pose classifier reads on the first crop",
        **({"reframed": "the posed crops taken again where the reframing regressor (retrieval.reframe), trained on "
                        "the train people's photos, reads them off", "reframe": reframe_record} if reframer else {}),
        "ms_per_photo_detect_and_crop": round(1000 * detect_seconds / max(1, len(asked)), 1),
        **({"framing": {"folder": str(args.framing), "found": framed["found"],
                        "ms_per_photo": framed["ms_per_photo"]}} if framed else {}),
        "seconds": round(time.perf_counter() - started, 1),
        "provenance": provenance(seed=args.seed),
    }
    return record


def framing_ranking(args, generator, gallery, queries, photos: np.ndarray, photo_index: np.ndarray,
                    among: np.ndarray) -> dict:
    """The query photos (the same scenes as photo_crops) cropped by a saved photo framing
    (retrieval.photo_framing) and ranked among the gallery by each face's nearest crop; a photo where it
    finds no face is a miss. Returns the ranking, the share of photos found and the time a photo."""
    from facedata.photo import NoFaceError
    from retrieval.photo_framing import PhotoFraming

    framing = PhotoFraming.load(args.framing)
    placed = scenes(photos, args.seed + 1)
    m, size = len(framing.spread), tuple(gallery.image_size)
    crops = np.zeros((len(placed), m, *size), dtype=np.uint8)
    found = np.zeros(len(placed), dtype=bool)
    t0 = time.perf_counter()
    for i, scene in enumerate(tqdm(placed, desc="photo queries: the photo framing", unit="photo")):
        try:
            crops[i], found[i] = framing.crops(scene.image, "scene"), True
        except NoFaceError:
            pass
    seconds = time.perf_counter() - t0
    g, q = len(gallery), len(queries)
    images = np.concatenate([gallery.images, crops.reshape(-1, *size)])
    positions = g + (photo_index[:, None] * m + np.arange(m)).ravel()  # each query's m crops, in query order
    every, _ = view_distances(generator, images, positions, None, batch_size=args.batch_size)
    nearest = every[:, :g].reshape(q, m, g).min(axis=1)
    ranked = rank_among(nearest, among, queries.targets, max(KS))
    ranked[~found[photo_index]] = -1
    return {"ranked": ranked, "found": round(float(found.mean()), 4), "ms_per_photo": round(1000 * seconds / len(placed), 1)}


def parse_spread(text: str) -> tuple[float, float]:
    """--spread "0.02:0.04" → (0.02, 0.04)."""
    try:
        offset, log_scale = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not OFFSET:LOG_SCALE (two numbers, e.g. 0.02:0.04)") from None
    return offset, log_scale


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint (or training run) folder")
    parser.add_argument("--data", required=True, help="the FaceSet the model works on (its test people are the gallery)")
    parser.add_argument("--photos", required=True, help="the same faces at source resolution, pasted into the photos")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--fit-faces", type=int, default=150, help="train faces the framing is fitted on")
    parser.add_argument("--detector", choices=list(DETECTORS), default=DetectConfig.detector)
    parser.add_argument("--blaze-search", choices=SEARCHES, default=DetectConfig.blaze_search,
                        help="how BlazeFace reads each window size (facedata.blazeface.SEARCHES)")
    parser.add_argument("--min-face", type=int, default=DetectConfig.min_face,
                        help="narrowest face searched for, px in the photo (the commands' own; the tables before "
                             "2026-12 were made at 24, which refused the smallest cmu_faces faces pasted into photos)")
    parser.add_argument("--reframe", action="store_true",
                        help="also re-take each posed crop where a regressor trained on the train people reads it off")
    parser.add_argument("--reframe-copies", type=int, default=3, help="random crops of each train face it learns from")
    parser.add_argument("--spread", type=parse_spread, default=None, metavar="OFFSET:LOG_SCALE",
                        help="also search with the reframed crop moved 6 ways (± OFFSET sides across and down, "
                             "± LOG_SCALE in size): each gallery face's distance the mean over the 7 crops (row "
                             "'spread') or the smallest (row 'nearest')")
    parser.add_argument("--framing", default=None,
                        help="also the commands' photo path: the photos cropped by this photo framing (rbg framing fit)")
    parser.add_argument("--split", choices=["test", "val"], default="test",
                        help="whose faces are the gallery and the queries (val: to choose on)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--cache", default=None, help="the bench's cache folder (the pose classifier is reused)")
    parser.add_argument("--out", required=True, help="folder for photo_path.json and photo_path.md")
    args = parser.parse_args(argv)
    record = run(args)
    write_report(args.out, "photo_path", record, markdown(record))
    print(markdown(record))
    print(f"detection + crop: {record['ms_per_photo_detect_and_crop']} ms per photo; wall time {record['seconds']} s")


if __name__ == "__main__":
    main()
