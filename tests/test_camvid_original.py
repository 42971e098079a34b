"""Original 960x720 CamVid: colour labels grouped into the 11 SegNet classes, SegNet split."""

import os
import re

import cv2
import ml_collections
import numpy as np
import pytest

from data_pipelines import DataError, build_source
from data_pipelines.camvid import CamVidSource
from data_pipelines.camvid_original import CamVidOriginalSource, segnet_split_names
from data_pipelines.metadata import CAMVID, CAMVID32, CAMVID32_COLORS

# label_colors.txt of the release and the SegNet grouping, spelt out independently of
# metadata.py so a typo there cannot pass unnoticed.
LABEL_COLORS = """64 128 64\tAnimal
192 0 128\tArchway
0 128 192\tBicyclist
0 128 64\tBridge
128 0 0\tBuilding
64 0 128\tCar
64 0 192\tCartLuggagePram
192 128 64\tChild
192 192 128\tColumn_Pole
64 64 128\tFence
128 0 192\tLaneMkgsDriv
192 0 64\tLaneMkgsNonDriv
128 128 64\tMisc_Text
192 0 192\tMotorcycleScooter
128 64 64\tOtherMoving
64 192 128\tParkingBlock
64 64 0\tPedestrian
128 64 128\tRoad
128 128 192\tRoadShoulder
0 0 192\tSidewalk
192 128 128\tSignSymbol
128 128 128\tSky
64 128 192\tSUVPickupTruck
0 0 64\tTrafficCone
0 64 64\tTrafficLight
192 64 128\tTrain
128 128 0\tTree
192 128 192\tTruck_Bus
64 0 64\tTunnel
192 192 0\tVegetationMisc
0 0 0\tVoid
64 192 0\tWall
"""
GROUPS = {
    0: ["Sky"],
    1: ["Building", "Wall", "Tunnel", "Archway", "Bridge"],
    2: ["Column_Pole", "TrafficCone"],
    3: ["Road", "LaneMkgsDriv", "LaneMkgsNonDriv"],
    4: ["Sidewalk", "ParkingBlock", "RoadShoulder"],
    5: ["Tree", "VegetationMisc"],
    6: ["SignSymbol", "Misc_Text", "TrafficLight"],
    7: ["Fence"],
    8: ["Car", "SUVPickupTruck", "Truck_Bus", "Train", "OtherMoving"],
    9: ["Pedestrian", "Child", "CartLuggagePram", "Animal"],
    10: ["Bicyclist", "MotorcycleScooter"],
    255: ["Void"],
}
COLORS = [
    (tuple(int(v) for v in line.split()[:3]), line.split()[3])
    for line in LABEL_COLORS.splitlines()
]
EXPECTED_ID = {name: train_id for train_id, names in GROUPS.items() for name in names}
SIZE = (8, 12)  # (H, W); the real frames are 720x960


def _grid_label():
    """An RGB label holding each of the 32 colours in a 4x8 block, tiled to SIZE."""
    rgb = np.array([c for c, _ in COLORS], np.uint8).reshape(4, 8, 3)
    return np.tile(rgb, (2, 2, 1))[: SIZE[0], : SIZE[1]]


def _write_rgb(path, rgb):
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))  # cv2 writes BGR


def _fake_release(root, splits=("train", "val", "test"), layout="release", colors_file=True):
    """Tiny frames under every SegNet name of `splits`, in the release or list layout."""
    image_dir, label_dir = (
        ("701_StillsRaw_full", "LabeledApproved_full") if layout == "release"
        else ("images", "labels"))
    os.makedirs(root / image_dir)
    os.makedirs(root / label_dir)
    rng = np.random.default_rng(0)
    label = _grid_label()
    for split in splits:
        for name in segnet_split_names(split):
            image = rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)
            _write_rgb(root / image_dir / f"{name}.png", image)
            _write_rgb(root / label_dir / f"{name}_L.png", label)
    if colors_file:
        (root / "label_colors.txt").write_text(LABEL_COLORS)
    return root


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return _fake_release(tmp_path_factory.mktemp("camvid_original"))


def test_metadata_table_matches_label_colors_and_grouping():
    assert [(rgb, name) for name, rgb, _ in CAMVID32_COLORS] == COLORS
    for name, _, group in CAMVID32_COLORS:
        expected = EXPECTED_ID[name]
        assert (group is None) if expected == 255 else group == CAMVID.class_names[expected]
    assert CAMVID32.num_classes == 31 and "Void" not in CAMVID32.class_names
    assert tuple(CAMVID32.palette[CAMVID32.class_names.index("Wall")]) == (64, 192, 0)


def test_split_names_are_the_segnet_split():
    train, val, test = (set(segnet_split_names(s)) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (367, 101, 233)
    assert not train & val and not train & test and not val & test
    assert segnet_split_names("trainval") == segnet_split_names("train") + segnet_split_names(
        "val")
    sequences = [name.split("_")[0] for name in train | val | test]
    assert {s: sequences.count(s) for s in set(sequences)} == {
        "0001TP": 124, "0006R0": 101, "0016E5": 305, "Seq05VD": 171}
    with pytest.raises(DataError, match="trainval"):
        segnet_split_names("training")


def test_split_names_match_the_segnet_copy(camvid_root):
    for split in ("train", "val"):
        lines = (camvid_root / f"{split}.txt").read_text().split("\n")
        names = [os.path.basename(line.split()[0])[:-4] for line in lines if line.strip()]
        assert tuple(names) == segnet_split_names(split)


def test_every_colour_maps_to_its_group(release):
    source = CamVidOriginalSource(str(release), "val")
    example = source[0]
    expected = np.array([EXPECTED_ID[name] for _, name in COLORS], np.uint8).reshape(4, 8)
    expected = np.tile(expected, (2, 2))[: SIZE[0], : SIZE[1]]
    np.testing.assert_array_equal(example["label"], expected)
    assert example["label"].dtype == np.uint8 and (example["label"] == 255).sum() == 2
    bgr = cv2.imread(str(release / "701_StillsRaw_full" / source.name(0)), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(example["image"], bgr[..., ::-1])


@pytest.mark.parametrize("split,count", [("train", 367), ("val", 101), ("test", 233),
                                         ("trainval", 468)])
def test_split_selection(release, split, count):
    source = CamVidOriginalSource(str(release), split)
    assert len(source) == count
    assert [source.name(i)[:-4] for i in range(count)] == list(segnet_split_names(split))
    assert "num_examples=" + str(count) in repr(source)


def test_unknown_colour_names_file_and_colour(tmp_path):
    root = _fake_release(tmp_path / "camvid", splits=("val",))
    name = segnet_split_names("val")[3]
    path = root / "LabeledApproved_full" / f"{name}_L.png"
    label = _grid_label()
    label[5, 7] = (1, 2, 3)
    _write_rgb(path, label)
    source = CamVidOriginalSource(str(root), "val")
    source[2]
    with pytest.raises(DataError) as err:
        source[3]
    message = str(err.value)
    assert str(path) in message and "RGB (1, 2, 3) x1 px" in message
    assert "skip_corrupt" in message


def test_list_layout_without_colour_file(tmp_path):
    root = _fake_release(tmp_path / "camvid", splits=("val",), layout="list",
                         colors_file=False)
    source = CamVidOriginalSource(str(root), "val")
    assert len(source) == 101
    assert (source[0]["label"] == 255).sum() == 2


def test_foreign_label_colors_file_is_rejected(tmp_path):
    root = _fake_release(tmp_path / "camvid", splits=("val",))
    (root / "label_colors.txt").write_text(LABEL_COLORS.replace("64 192 0\tWall", "1 2 3\tWall"))
    with pytest.raises(DataError) as err:
        CamVidOriginalSource(str(root), "val")
    message = str(err.value)
    assert str(root / "label_colors.txt") in message and "(1, 2, 3)" in message


def test_missing_frames_are_listed(tmp_path):
    root = _fake_release(tmp_path / "camvid", splits=("val",))
    gone = root / "LabeledApproved_full" / f"{segnet_split_names('val')[0]}_L.png"
    os.remove(gone)
    with pytest.raises(DataError) as err:
        CamVidOriginalSource(str(root), "val")
    assert str(gone) in str(err.value) and "1 of the 202 files" in str(err.value)
    with pytest.raises(DataError, match="466 of the 466 files of CamVid split 'test'"):
        CamVidOriginalSource(str(root), "test")


def test_missing_label_dir(tmp_path):
    root = tmp_path / "camvid"
    os.makedirs(root / "701_StillsRaw_full")
    with pytest.raises(DataError, match=re.escape(str(root / "LabeledApproved_full"))):
        CamVidOriginalSource(str(root), "train")


def test_wrong_format_points_at_the_other_one(tmp_path):
    segnet = tmp_path / "segnet"
    os.makedirs(segnet / "train")
    os.makedirs(segnet / "trainannot")
    with pytest.raises(DataError, match=re.escape("camvid_format=segnet")) as err:
        CamVidOriginalSource(str(segnet), "train")
    assert str(segnet / "701_StillsRaw_full") in str(err.value)
    original = tmp_path / "original"
    os.makedirs(original / "701_StillsRaw_full")
    with pytest.raises(DataError, match=re.escape("camvid_format=original")):
        CamVidSource(str(original), "train")


def test_build_source_dispatches_on_camvid_format(release):
    config = ml_collections.ConfigDict(
        {"name": "camvid", "root": str(release), "camvid_format": "original"})
    assert isinstance(build_source(config, "val"), CamVidOriginalSource)
    config.camvid_format = "960x720"
    with pytest.raises(DataError, match=re.escape("camvid_format='960x720'")):
        build_source(config, "val")


def test_fastai_repack_is_recognised(tmp_path):
    root = tmp_path / "camvid"
    os.makedirs(root / "images")
    os.makedirs(root / "labels")
    cv2.imwrite(str(root / "labels" / "0016E5_07959_P.png"), np.zeros(SIZE, np.uint8))
    with pytest.raises(DataError, match=re.escape("*_P.png class-index labels")):
        CamVidOriginalSource(str(root), "val")


def test_train_pipeline_reads_the_original_release(release):
    from data_pipelines import pipeline

    config = ml_collections.ConfigDict({
        "seed": 0, "global_batch_size": 2,
        "dataset": {"name": "camvid", "root": str(release), "camvid_format": "original",
                    "train_split": "val"},
        "data": {"crop_size": (8, 8), "scale_range": (1.0, 1.0), "hflip": True,
                 "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "channel_order": "rgb",
                 "num_workers": 0, "num_threads": 1, "prefetch_buffer_size": 1},
    })
    it = pipeline.make_train_iterator(config, 0, 1)
    batch = next(it)
    it.close()
    assert batch["label"].shape == (2, 8, 8)
    assert set(np.unique(batch["label"]).tolist()) <= set(range(11)) | {255}
    assert pipeline.dataset_info(config).num_classes == 11
