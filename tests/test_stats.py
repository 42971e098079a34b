"""data_pipelines.stats: class frequencies equal the published SegNet CamVid figures."""

import cv2
import numpy as np
import pytest

from data_pipelines import DataError
from data_pipelines.camvid import CamVidSource
from data_pipelines.metadata import CAMVID
from data_pipelines.stats import count_split, format_table

# Published share (%) of all SegNet CamVid val pixels per class, ids 0..10; the loader must
# reproduce it, so a wrong label mapping cannot pass.
VAL_PERCENT = [9.177, 25.962, 0.564, 28.953, 8.719, 16.336, 0.892, 3.078, 1.746, 0.651, 2.217]


def test_camvid_val_frequencies_match_the_published_table(camvid_root):
    counts = count_split(CamVidSource(str(camvid_root), "val"), CAMVID.num_classes)
    assert counts["num_examples"] == 101 and counts["errors"] == []
    assert counts["pixels"].sum() == 101 * 480 * 360
    percent = 100 * counts["pixels"] / counts["pixels"].sum()
    np.testing.assert_allclose(percent[:11], VAL_PERCENT, atol=5e-4)
    assert round(percent[11], 3) == 1.703
    table = format_table(counts, CAMVID, "camvid val")
    assert "camvid val: 101 images, 17,452,800 px (1.703 % ignored)" in table
    assert "  0  Sky" in table and "9.177" in table


def _tree(root, num=4):
    rng = np.random.default_rng(0)
    (root / "val").mkdir(parents=True)
    (root / "valannot").mkdir()
    lines = []
    for i in range(num):
        name = f"0001TP_{i:06d}.png"
        cv2.imwrite(str(root / "val" / name), rng.integers(0, 256, (6, 8, 3), np.uint8))
        cv2.imwrite(str(root / "valannot" / name), np.full((6, 8), i % 12, np.uint8))
        lines.append(f"val/{name} valannot/{name}\n")
    (root / "val.txt").write_text("".join(lines))
    return root


def test_unreadable_files_stop_or_are_listed(tmp_path):
    root = _tree(tmp_path / "camvid")
    bad = root / "valannot" / "0001TP_000002.png"
    bad.write_bytes(bad.read_bytes()[:20])
    source = CamVidSource(str(root), "val")
    with pytest.raises(DataError, match=str(bad)):
        count_split(source, 11)
    counts = count_split(source, 11, keep_going=True)
    assert counts["num_examples"] == 3 and len(counts["errors"]) == 1
    assert str(bad) in counts["errors"][0]
    assert counts["pixels"].tolist() == [48, 48] + [0] * 1 + [48] + [0] * 8
    assert counts["images"][:4].tolist() == [1, 1, 0, 1]
