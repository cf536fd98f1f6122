"""The paper's published figures (Tables 1–3 of Ghodrati et al.), printed beside ours in every report."""

from __future__ import annotations

from generator.evaluate import PAPER_TABLE1

# Table 1: mean per-pixel MSE (0–255 scale) on 10,000 random Multi-PIE test pairs.
TABLE1_MSE = {"stage 1": PAPER_TABLE1["stage1_mse"], "stage 2": PAPER_TABLE1["stage2_mse"]}

# Table 2 (criterion 1: identity and target pose correct) and Table 3 (criterion 2: also the
# query's illumination). Keys are (method, features); values are recall@1/5/20 in percent.
TABLE2_RECALL = {
    ("2-step retrieval", "image"): (11.5, 25.9, 43.2),
    ("2-step retrieval", "our 2nd network"): (16.4, 33.0, 50.7),
    ("2-step retrieval", "VGG-16"): (21.7, 38.1, 53.5),
    ("2-step retrieval", "Deep"): (56.9, 78.0, 90.2),
    ("Yim et al.", "CPI"): (61.0, 79.5, 90.8),
    ("ours", "image"): (39.0, 61.5, 75.4),
    ("ours", "our 2nd network"): (53.5, 80.5, 90.7),
}
TABLE3_RECALL = {
    ("2-step retrieval", "image"): (6.3, 15.6, 25.3),
    ("2-step retrieval", "our 2nd network"): (9.5, 21.5, 32.7),
    ("Yim et al.", "CPI"): (14.8, 39.7, 63.7),
    ("ours", "image"): (29.5, 52.8, 66.3),
    ("ours", "our 2nd network"): (43.2, 74.1, 86.0),
}
PAPER_KS = (1, 5, 20)

# §4.1.2: the 2-step baseline's pose classifier (fc6 of VGG-Face) reaches 73.3 % on test data.
POSE_CLASSIFIER_ACCURACY = 73.3
