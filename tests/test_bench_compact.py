"""The compact-index benchmark's choice: the smallest factory within 1 point of exact, and a table that says when none is."""

from bench_compact import choose, markdown


def row(factory, size, r1):
    return {"factory": factory, "bytes_per_face": size, "criterion1": {"1": r1, "5": r1, "20": r1},
            "criterion2": {"1": 0.0}, "r1_gap_to_exact": round(90.0 - r1, 2), "search_ms_per_query": 1.0,
            "filter": "selectors"}


def record(rows):
    data = {"name": "s", "split": "val", "gallery": 10, "gallery_identities": 2, "fitted_on_identities": 3, "queries": 5}
    return {"data": data, "config": {"fit_on": "train"}, "dimension": 8, "full_bytes_per_face": 32, "factories": rows,
            "target_bytes_per_face": 4096, "chosen": choose(rows, 90.0)}


def test_the_smallest_factory_within_one_point_is_chosen():
    rows = [row("Flat", 32768, 90.0), row("PCA64,Flat", 256, 89.5), row("PCA256,PQ64", 64, 85.0)]
    chosen = choose(rows, 90.0)
    assert chosen["factory"] == "PCA64,Flat" and chosen["within_1_point"]


def test_when_none_is_within_one_point_the_most_accurate_is_named_as_such():
    rows = [row("Flat", 32768, 90.0), row("PCA64,Flat", 256, 88.3), row("PCA128,Flat", 512, 88.5)]
    chosen = choose(rows, 90.0)
    assert chosen["factory"] == "PCA128,Flat" and not chosen["within_1_point"]
    text = markdown(record(rows))
    assert "None within 1 point of exact; the most accurate at ≤ 4,096 B a face: **PCA128,Flat**" in text
    assert "Smallest within" not in text
