"""The compact-index benchmark's choice: the factory most faithful to exact search within the byte budget."""

from bench_compact import choose, markdown


def row(factory, size, r1, agree=100.0, one=1.0):
    return {"factory": factory, "bytes_per_face": size, "criterion1": {"1": r1, "5": r1, "20": r1},
            "criterion2": {"1": 0.0}, "r1_gap_to_exact": round(90.0 - r1, 2), "top1_as_exact": agree,
            "search_ms_per_query": 1.0, "one_query_ms": one, "filter": "selectors"}


def record(rows):
    data = {"name": "s", "split": "val", "gallery": 10, "gallery_identities": 2, "fitted_on_identities": 3, "queries": 5}
    return {"data": data, "config": {"fit_on": "train"}, "dimension": 8, "full_bytes_per_face": 32, "factories": rows,
            "target_bytes_per_face": 4096, "chosen": choose(rows, 90.0)}


def test_the_factory_whose_top_hit_is_most_often_exact_search_s_is_chosen_not_the_luckiest():
    rows = [row("Flat", 32768, 90.0), row("PCA64,Flat", 256, 91.5, agree=80.0), row("PCA256,SQ8", 256, 89.6, agree=93.0),
            row("PCA512,SQ8", 512, 89.8, agree=93.0), row("PCA1024,Flat", 8192, 90.0, agree=99.0),
            row("PCA1024,SQ8", 1024, 90.0, agree=98.0, one=20.0)]
    chosen = choose(rows, 90.0)
    assert chosen["factory"] == "PCA256,SQ8" and chosen["within_1_point"] and chosen["top1_as_exact"] == 93.0
    text = markdown(record(rows))
    assert ("Most faithful to exact search (top-1 the same for 93.0 % of queries) at ≤ 4,096 B a face and ≤ 5 ms "
            "a single query: **PCA256,SQ8**") in text


def test_a_chosen_factory_outside_one_point_of_exact_is_named_as_such():
    rows = [row("Flat", 32768, 90.0), row("PCA64,Flat", 256, 88.3, agree=70.0), row("PCA128,Flat", 512, 88.5, agree=75.0)]
    chosen = choose(rows, 90.0)
    assert chosen["factory"] == "PCA128,Flat" and not chosen["within_1_point"]
    assert "**PCA128,Flat**, 512 B, C1 R@1 88.5 (not within 1 point of exact R@1)" in markdown(record(rows))


def test_a_record_of_the_earlier_rule_keeps_its_words_and_shows_dashes_for_what_it_did_not_measure():
    rows = [row("Flat", 32768, 90.0), row("PCA64,Flat", 256, 89.5)]
    for r in rows:
        del r["top1_as_exact"], r["one_query_ms"]
    earlier = {**record(rows), "chosen": {"factory": "PCA64,Flat", "bytes_per_face": 256, "c1_r1": 89.5, "within_1_point": True}}
    text = markdown(earlier)
    assert "Smallest within 1 point of exact at ≤ 4,096 B a face: **PCA64,Flat**, 256 B, C1 R@1 89.5." in text
    assert "| PCA64,Flat | 256 | 89.5 | 89.5 | 89.5 | 0.0 | -0.5 | — | 1.000 | — | selectors |" in text


def test_a_run_with_int8_queries_says_so_under_its_table():
    rows = [row("Flat", 32768, 90.0), row("PCA64,Flat", 256, 89.5)]
    text = markdown({**record(rows), "config": {"fit_on": "gallery", "int8_queries": True}})
    assert "factories fitted on the gallery itself; queries generated in int8" in text


def test_a_row_without_a_one_query_time_from_an_earlier_record_is_shown_but_never_chosen():
    rows = [row("Flat", 32768, 90.0), row("PCA64,Flat", 256, 89.5, agree=80.0),
            row("VIEWPCA128,SQ8", 640, 90.0, agree=95.0, one=None)]
    assert choose(rows, 90.0)["factory"] == "PCA64,Flat"
    assert "| VIEWPCA128,SQ8 | 640 | 90.0 | 90.0 | 90.0 | 0.0 | -0.0 | 95.0 | 1.000 | — | selectors |" in markdown(record(rows))


def test_a_test_record_chooses_nothing_and_says_the_choice_is_made_on_val():
    rows = [row("Flat", 32768, 90.0), row("PCA64,Flat", 256, 89.5, agree=80.0)]
    test = {**record(rows), "chosen": None}
    test["data"] = {**test["data"], "split": "test"}
    text = markdown(test)
    assert "Test: figures only; a factory is chosen on val." in text and "Most faithful" not in text
