"""Choose BlazeFace's threshold and the face check's on validation pictures, never on the measured sets.

    python benchmarks/choose_detector.py --kdef data/kdef --mirror none --wallpapers data/wallpapers --cmu-people val \
        --onet-share 0 0.5 1 --onet tuned --out reports/detect/choose.json

(the default's thresholds were chosen so, with the shipped face check and tuned ONet:
docs/results/choose_detector_onet_tuned_val.json)

Validation sets (none of them in benchmarks/detect_faces.py's tables):
- the cmu_faces photos of the recipe's train people (the split of --split-from, a FaceSet of cmu_faces), or
  with --cmu-people val its val people, for a face check trained on the train people's faces (--real-faces);
- with --kdef, 40 scenes per yaw of KDEF's first 45 people (the recipe's train people), seed 5: found
  when the largest face kept is the pasted one (the face a query takes), so false faces in the
  background count against a rule here too;
- photo_scenes.validation_pictures(): face-free pictures that are not the benchmark's face-free set; with
  --wallpapers, also the validation wallpapers of benchmarks/wallpapers.py's folder at three scales.
Every picture is searched as the commands search it, for faces down to a share of its shorter side
(DetectConfig.min_face_share), at least DetectConfig.min_face (16 px).
Every way of reading the mirror images (none, mean, max) and rule on the grid is scored. A rule keeps
a BlazeFace box of score s that the face check finds p likely a face when s ≥ blaze and p ≥ check, or
(a second way in, for the small turned faces BlazeFace scores lower) s ≥ low away from the first way's
faces when the second check finds it at least `high` likely: the face check (high ≥ check) or ONet
(facedata.onet, trained on real faces; --onet: tuned on the check's examples, the default, or MTCNN's own);
low = blaze is the single threshold pair
(facedata.detect.two_way_faces). With --onet-share, p is the face check's probability blended with ONet's
(DetectConfig.check_onet_share), each share given scored as its own grid. The choice: no face reported on
any validation picture, then the most faces found (cmu_faces photos and KDEF scenes together), then no
mirror reading (half the work), then the smaller ONet share, then the face check over ONet, then the
higher thresholds. With --margin, only a robust rule: one with no validation picture with a face
at the rule nor at any rule one grid step looser in one threshold (measured, not the default: it moves
the first way to a surer check and finds fewer faces, and the KDEF photo path on the val people fell).
The judge of the second way (the face check or ONet) is then settled on the photo path of KDEF's val
people (benchmarks/photo_path.py --split val), where false faces in a photo's background cost queries
(docs/data.md): the default is ONet's best rule, the face check's finding more here.
Prints the single-pair grid as a table and the choice; --out writes the rules as JSON with the provenance
(every single pair, the robust two-way rules and the 200 clean two-way rules that find the most).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facedata.atomic import write_json
from facedata.blazeface import SEARCHES
from facedata.detect import SECOND_WAY_OVERLAP, DetectConfig, blaze_faces_at, blend
from facedata.face_check import face_probability
from facedata.onet import VERSIONS, onet_probability
from facedata.provenance import provenance
from photo_scenes import add_validation_arguments, found_at, validation_sets

BLAZE_GRID = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.63)
CHECK_GRID = tuple(np.round(np.arange(0.0, 1.0, 0.05), 2))


@dataclass(frozen=True)
class Run:
    """BlazeFace's faces in one picture at one threshold: boxes (n, 4), the face check's and ONet's probabilities
    (n,), and whether each is on the pasted face (n,) (True where no face is known to be on)."""

    boxes: np.ndarray
    likely: np.ndarray
    on_face: np.ndarray
    onet: np.ndarray


def candidates(images: list[np.ndarray], search: DetectConfig, truths: list | None, mirror: str = "none") -> list[dict]:
    """Per picture, {threshold: Run} for every threshold of BLAZE_GRID, from one reading of the picture searched
    down to the narrowest face `search` looks for in a picture of its size (DetectConfig.search_face), its boxes
    judged by the face check and by `search.onet`'s ONet."""
    out = []
    for i, image in enumerate(images):
        runs = {}
        for threshold, faces in zip(BLAZE_GRID, blaze_faces_at(image, search.search_face(image.shape), BLAZE_GRID, mirror,
                                                               search.blaze_search)):
            boxes = np.array([f.box for f in faces], dtype=np.float64).reshape(-1, 4)
            likely = face_probability(image, boxes) if len(faces) else np.zeros(0)
            on_face = np.array([truths is None or found_at(box, truths[i]) for box in boxes], dtype=bool)
            runs[threshold] = Run(boxes, likely, on_face, onet_probability(image, boxes, version=search.onet))
        out.append(runs)
    return out


def blended(pictures: list[dict], onet_share: float) -> list[dict]:
    """The pictures' runs with the face check's probability blended with ONet's by `onet_share`
    (facedata.detect.blend, as check_probability blends them; 0: the check alone)."""
    if not onet_share:
        return pictures
    return [{threshold: replace(run, likely=blend(run.likely, run.onet, onet_share))
             for threshold, run in runs.items()} for runs in pictures]


def overlaps(pictures: list[dict]) -> list[dict]:
    """Per picture, {(blaze, low): (n_blaze, n_low) bool}: which boxes of the lower run overlap which of the higher's."""
    from facedata.blazeface import _iou

    out = []
    for runs in pictures:
        pairs = {}
        for high in BLAZE_GRID:
            for low in [t for t in BLAZE_GRID if t < high]:
                a, b = runs[high].boxes, runs[low].boxes
                pairs[(high, low)] = (np.array([_iou(box, b) > SECOND_WAY_OVERLAP for box in a]).reshape(len(a), len(b))
                                      if len(a) and len(b) else np.zeros((len(a), len(b)), dtype=bool))
        out.append(pairs)
    return out


def found(pictures: list[dict], overlap: list[dict], blaze: float, check: float, low: float, high: float,
          second_check: str = "face-check", on_face: bool = False) -> int:
    """How many pictures keep a face under the rule (facedata.detect.two_way_faces, whose second way is vetted
    by `second_check`). With `on_face`, a picture counts only when the largest face kept is the pasted one, the
    face a query takes (facedata.photo.choose_face)."""
    count = 0
    for runs, pairs in zip(pictures, overlap):
        first = runs[blaze]
        kept = first.likely >= check
        boxes, truth = [first.boxes[kept]], [first.on_face[kept]]
        if low < blaze and len(runs[low].boxes):
            second = runs[low]
            new = ~pairs[(blaze, low)][kept].any(axis=0)
            taken = new & ((second.onet >= high) if second_check == "onet" else (second.likely >= max(high, check)))
            boxes.append(second.boxes[taken])
            truth.append(second.on_face[taken])
        boxes, truth = np.concatenate(boxes), np.concatenate(truth)
        if not len(boxes):
            continue
        if on_face:
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            count += bool(truth[int(np.argmax(areas))])
        else:
            count += 1
    return count


def grid(cmu: list[dict], kdef: list[dict], free: list[dict], mirror: str, onet_share: float = 0.0,
         onet: str = DetectConfig.onet) -> list[dict]:
    """Every rule: each first way (blaze, check), alone and with each second way (low < blaze) vetted by the face
    check (high ≥ check) or by ONet (any high); the face check blended with ONet (the `onet` version the
    candidates were judged by, recorded in each row) by `onet_share`."""
    sets = [(name, blended(pictures, onet_share), overlaps(pictures))
            for name, pictures in (("cmu", cmu), ("kdef", kdef), ("free", free))]
    rows = []
    first_ways = [(blaze, check) for blaze in BLAZE_GRID for check in CHECK_GRID]
    for blaze, check in tqdm(first_ways, desc=f"rules, mirror {mirror}, ONet share {onet_share:g}", unit="first way"):
        ways = [(blaze, float(check), "face-check")]
        ways += [(low, float(high), "face-check") for low in BLAZE_GRID if low < blaze for high in CHECK_GRID if high >= check]
        ways += [(low, float(high), "onet") for low in BLAZE_GRID if low < blaze for high in CHECK_GRID]
        for low, high, second_check in ways:
            rule = (blaze, float(check), low, high, second_check)
            counts = {name: found(pictures, overlap, *rule, on_face=name == "kdef") for name, pictures, overlap in sets}
            rows.append({"mirror": mirror, "onet": onet, "onet_share": onet_share, "blaze_threshold": blaze,
                         "check_threshold": float(check),
                         "low_threshold": low, "high_check": high, "second_check": second_check,
                         "cmu_found": counts["cmu"], "cmu_total": len(cmu), "kdef_found": counts["kdef"],
                         "kdef_total": len(kdef), "pictures_with_a_face": counts["free"], "pictures": len(free)})
    return rows


def _looser(value: float, grid: tuple) -> float | None:
    """The grid's next lower value, or None at its bottom."""
    lower = [g for g in grid if g < value - 1e-9]
    return float(max(lower)) if lower else None


def rule_key(row: dict) -> tuple:
    """A rule as (mirror, blaze, check, low, high, second check, ONet share): what tells one row of the grid from
    another."""
    return (row["mirror"], row["blaze_threshold"], row["check_threshold"], row["low_threshold"], row["high_check"],
            row["second_check"], row.get("onet_share", 0.0))


def looser_rules(row: dict) -> list[tuple]:
    """The rules one grid step looser than `row` in one of its thresholds (a single pair stays a single pair; a
    first way lowered to the second way's threshold takes in every face the second way would, so it is the single
    pair at that threshold)."""
    key = rule_key(row)
    mirror, blaze, check, low, high, second, share = key
    single = low == blaze
    out = []
    for i, grid_of in ((1, BLAZE_GRID), (2, CHECK_GRID), (3, BLAZE_GRID), (4, CHECK_GRID)):
        if single and i >= 3:
            continue
        value = _looser(key[i], grid_of)
        if value is None:
            continue
        changed = list(key)
        changed[i] = value
        if single and i == 1:
            changed[3] = value
        elif i == 1 and value <= low:  # the first way reaches down to the second's threshold: the single pair at it
            changed = [mirror, value, check, value, check, "face-check", share]
        out.append(tuple(changed))
    return out


def robust(rows: list[dict]) -> list[dict]:
    """The rules with no validation picture with a face at the rule and at every rule one grid step looser
    (a rule on the edge of reporting a false face is left out: the face-free pictures it will meet are not these)."""
    false = {rule_key(r): r["pictures_with_a_face"] for r in rows}
    return [r for r in rows if r["pictures_with_a_face"] == 0
            and all(false.get(other, 0) == 0 for other in looser_rules(r))]


def rule_or_none(rows: list[dict], margin: bool) -> dict | None:
    """The choice among `rows`: no validation picture with a face (with `margin`, a robust rule), then the most faces
    found, then no mirror reading, then the face check alone over one blended with ONet (less work), then the face
    check over ONet as the second way's judge, then the higher thresholds; None where no rule qualifies (the record
    says so)."""
    clean = robust(rows) if margin else [r for r in rows if r["pictures_with_a_face"] == 0]
    if not clean:
        return None
    return max(clean, key=lambda r: (r["cmu_found"] + r["kdef_found"], r["mirror"] == "none", -r.get("onet_share", 0.0),
                                     r["second_check"] == "face-check", r["high_check"], r["check_threshold"],
                                     r["low_threshold"], r["blaze_threshold"]))


def choose(rows: list[dict], margin: bool = False) -> dict:
    """rule_or_none(), stopping where no rule on the grid qualifies: nothing to choose."""
    rule = rule_or_none(rows, margin)
    if rule is None:
        raise SystemExit("no rule on the grid keeps every validation picture free of faces")
    return rule


def recorded_rows(rows: list[dict]) -> list[dict]:
    """The rows worth keeping in the JSON record: every single pair, and the robust two-way rules and the 200
    clean ones that find the most; the other two-way rules are thousands of rows no choice reads."""
    taken = {id(r) for r in robust(rows)}
    clean = sorted((r for r in rows if r["pictures_with_a_face"] == 0 and r["low_threshold"] < r["blaze_threshold"]),
                   key=lambda r: -(r["cmu_found"] + r["kdef_found"]))
    taken |= {id(r) for r in clean[:200]}
    return [r for r in rows if r["low_threshold"] == r["blaze_threshold"] or id(r) in taken]


def markdown(rows: list[dict]) -> str:
    """The grid: a row per check threshold, a column per BlazeFace threshold, each cell
    "cmu found / KDEF found / validation pictures with a face"."""
    blazes = sorted({r["blaze_threshold"] for r in rows})
    cells = {(r["check_threshold"], r["blaze_threshold"]): f"{r['cmu_found']} / {r['kdef_found']} / {r['pictures_with_a_face']}"
             for r in rows if r["low_threshold"] == r["blaze_threshold"]}
    lines = ["| face check ≥ | " + " | ".join(f"BlazeFace ≥ {b:g}" for b in blazes) + " |", "|---" * (len(blazes) + 1) + "|"]
    for check in sorted({r["check_threshold"] for r in rows}):
        lines.append(f"| {check:g} | " + " | ".join(cells.get((check, b), "") for b in blazes) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_validation_arguments(parser)
    parser.add_argument("--min-face", type=int, default=DetectConfig.min_face, help="px, at least, for the cmu_faces photos")
    parser.add_argument("--scene-min-face", type=int, default=DetectConfig.min_face,
                        help="px, at least, for the scenes and face-free pictures (the commands' own; an earlier choice "
                             "read them at 48 px whatever their size)")
    parser.add_argument("--min-face-share", type=float, default=DetectConfig.min_face_share,
                        help="faces narrower than this share of a picture's shorter side are not searched for (the "
                             "commands' own, DetectConfig.min_face_share; 0: the px floors alone)")
    parser.add_argument("--search", choices=SEARCHES, default=DetectConfig.blaze_search,
                        help="how BlazeFace reads each window size (facedata.blazeface.SEARCHES)")
    parser.add_argument("--mirror", nargs="+", default=["none"], choices=["none", "mean", "max"],
                        help="BlazeFace's readings of each window's mirror image to try (facedata.blazeface.detect)")
    parser.add_argument("--onet-share", type=float, nargs="+", default=[DetectConfig.check_onet_share],
                        help="shares of ONet in the face check's score to try (DetectConfig.check_onet_share)")
    parser.add_argument("--onet", choices=VERSIONS, default=DetectConfig.onet,
                        help="which ONet judges with the face check (facedata.onet.VERSIONS: tuned here, or MTCNN's own)")
    parser.add_argument("--margin", action="store_true",
                        help="choose a robust rule: none of its one-step looser neighbours reports a face either")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    start = time.perf_counter()

    cmu_images, made, free = validation_sets(args, args.seed)
    kdef_images, kdef_truths = [s.image for s in made], [s.truth for s in made]

    rows = []
    for mirror in args.mirror:
        photos = DetectConfig(min_face=args.min_face, min_face_share=args.min_face_share, blaze_search=args.search, onet=args.onet)
        scenes = DetectConfig(min_face=args.scene_min_face, min_face_share=args.min_face_share, blaze_search=args.search,
                              onet=args.onet)
        cmu = candidates(tqdm(cmu_images, desc=f"cmu_faces photos, mirror {mirror}", unit="photo"), photos, None, mirror)
        kdef = candidates(tqdm(kdef_images, desc=f"KDEF scenes, mirror {mirror}", unit="scene"), scenes, kdef_truths, mirror)
        false = candidates(tqdm(free, desc=f"validation pictures, mirror {mirror}", unit="picture"), scenes, None, mirror)
        rows += [row for share in args.onet_share for row in grid(cmu, kdef, false, mirror, share, args.onet)]
    chosen = choose(rows, args.margin)
    single = rule_or_none([r for r in rows if r["low_threshold"] == r["blaze_threshold"]], args.margin)
    margin = rule_or_none(rows, margin=True)
    unchecked = [r for r in rows if r["check_threshold"] == 0.0 and r["low_threshold"] == r["blaze_threshold"]]
    for mirror in args.mirror:
        for share in args.onet_share:
            print(f"\nmirror: {mirror}, ONet share {share:g} (cells: cmu_faces photos found / KDEF train scenes found / "
                  "validation pictures with a face)\n")
            print(markdown([r for r in rows if r["mirror"] == mirror and r["onet_share"] == share]))
    for name, rule in (("one pair", single), ("robust (--margin)", margin), ("chosen", chosen)):
        if rule is None:
            print(f"{name}: no rule on the grid")
            continue
        second = "ONet" if rule["second_check"] == "onet" else "face check"
        second_way = ("no second way" if rule["low_threshold"] == rule["blaze_threshold"] else
                      f"or BlazeFace {rule['low_threshold']} with {second} {rule['high_check']}")
        print(f"{name}: mirror {rule['mirror']}, ONet share {rule['onet_share']:g}, "
              f"BlazeFace {rule['blaze_threshold']} with face check {rule['check_threshold']}, {second_way}: "
              f"cmu_faces photos {rule['cmu_found']}/{rule['cmu_total']}, KDEF train scenes "
              f"{rule['kdef_found']}/{rule['kdef_total']}, validation pictures with a face 0/{rule['pictures']}")
    if args.out:
        write_json(args.out, {"rows": recorded_rows(rows), "min_face": args.min_face,
                              "scene_min_face": args.scene_min_face, "min_face_share": args.min_face_share,
                              "search": args.search, "onet": args.onet, "onet_shares": args.onet_share,
                              "rules_scored": len(rows), "chosen": chosen,
                              "single_pair": single, "robust": margin, "margin": args.margin, "unchecked": unchecked,
                              "seconds": time.perf_counter() - start,
                              "cmu_people": args.cmu_people,
                              "provenance": provenance(seed=args.seed, data=str(args.data), kdef=str(args.kdef))})
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
