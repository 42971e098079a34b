"""Prediction export: segjax's mIoU equals cityscapesscripts' official evaluation of the files."""

import copy

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import override

from configs import default
from data_pipelines import pipeline
from data_pipelines.cityscapes import CityscapesSource
from data_pipelines.metadata import CITYSCAPES, get_info
from segjax import cityscapes_export, evaluate, sharding

ev = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
from cityscapesscripts.helpers.labels import trainId2label  # noqa: E402

LUT = CITYSCAPES.id_to_train_lut
GT_IDS = [7, 8, 11, 13, 17, 21, 23, 24, 26, 33]  # road ... bicycle; wall, train, ... never
IGNORED_IDS = [0, 1, 4, 5, 9, 14, 29]  # unlabeled, ego vehicle, static, dynamic, parking, ...
# Predicted train ids: bus (15) never occurs in the ground truth, bicycle (18) is never
# predicted, so the classes cover IoU 0 from either side and NaN (absent from both).
PRED_IDS = [0, 1, 2, 4, 5, 8, 10, 11, 13, 15]


def make_frames(root, sizes, city="frankfurt", split="val", seed=0):
    """Official-layout frames whose red channel holds the train id the oracle will predict."""
    rng = np.random.default_rng(seed)
    frames = []
    for i, (h, w) in enumerate(sizes):
        label_ids = np.kron(rng.choice(GT_IDS, (h // 8, w // 8)), np.ones((8, 8), int))
        for _ in range(3):
            top, left = rng.integers(0, h - 8), rng.integers(0, w - 8)
            label_ids[top:top + rng.integers(4, 20), left:left + rng.integers(4, 40)] = \
                rng.choice(IGNORED_IDS)
        label_ids = label_ids.astype(np.uint8)
        train = LUT[label_ids]
        pred = np.where(train == 255, rng.choice(PRED_IDS, (h, w)), train)
        noise = rng.random((h, w)) < 0.3
        pred[noise] = rng.choice(PRED_IDS, int(noise.sum()))
        pred[train == 18] = 1
        image = rng.integers(0, 256, (h, w, 3), np.uint8)
        image[..., 0] = pred
        stem = f"{city}_{i:06d}_{19 + i:06d}"
        for kind, array, suffix in (("leftImg8bit", image[..., ::-1], "leftImg8bit"),
                                    ("gtFine", label_ids, "gtFine_labelIds")):
            folder = root / kind / split / city
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{stem}_{suffix}.png"), array)
        frames.append((stem, label_ids, pred.astype(np.uint8)))
    return frames


class OracleModel:
    """Logits whose argmax is the train id in the input's red channel (mean 0, std 1)."""

    def apply(self, variables, images, train=False):
        ids = jnp.round(images[..., 0] * 255).astype(jnp.int32)
        return {"logits": jax.nn.one_hot(ids, CITYSCAPES.num_classes)}


def eval_config(root, out, **overrides):
    return override(default.get_config(), **{
        "dataset.name": "cityscapes", "dataset.root": str(root), "dataset.eval_split": "val",
        "data.mean": (0.0, 0.0, 0.0), "data.std": (1.0, 1.0, 1.0), "eval_batch_size": 8,
        "eval_write_predictions": str(out), **overrides})


def official_evaluation(root, results, monkeypatch):
    """cityscapesscripts' own pairing (getPrediction via CITYSCAPES_RESULTS) and scoring."""
    monkeypatch.setenv("CITYSCAPES_DATASET", str(root))
    monkeypatch.setenv("CITYSCAPES_RESULTS", str(results))
    args = copy.copy(ev.args)
    args.predictionPath, args.predictionWalk = None, None
    args.evalInstLevelScore = False  # nIoU needs *_instanceIds.png, not part of the IoU
    args.JSONOutput, args.colorized, args.bold, args.nocol = False, False, "", ""
    ground_truth = sorted(str(p) for p in root.glob("gtFine/val/*/*_gtFine_labelIds.png"))
    predictions = [ev.getPrediction(args, gt) for gt in ground_truth]
    return ev.evaluateImgLists(predictions, ground_truth, args)


def test_inverse_map_matches_cityscapesscripts():
    lut = cityscapes_export.train_to_source_lut(CITYSCAPES)
    for train_id in [*range(19), 255]:
        assert lut[train_id] == trainId2label[train_id].id


def test_segjax_miou_equals_official_evaluation(tmp_path, monkeypatch, capsys):
    root, out = tmp_path / "cityscapes", tmp_path / "results"
    sizes = [(64, 128), (48, 96), (64, 128)]  # 3 frames, batch 8: 5 padded; one frame smaller
    frames = make_frames(root, sizes)
    config = eval_config(root, out)
    info = get_info("cityscapes")
    mesh = sharding.make_mesh()

    result, _ = evaluate.run_evaluation(OracleModel(), {}, config, mesh, info=info)

    assert result["num_images"] == 3 and result["num_predictions_written"] == 3
    valid_pixels = sum(int((LUT[label_ids] < 19).sum()) for _, label_ids, _ in frames)
    assert result["confusion_matrix"].sum() == valid_pixels  # padding and ignore count nowhere
    files = sorted((out / "val").rglob("*.png"))
    assert [f.relative_to(out).as_posix() for f in files] == [
        f"val/frankfurt/{stem}_pred_labelIds.png" for stem, _, _ in frames]
    lut = cityscapes_export.train_to_source_lut(info)
    for path, (_, label_ids, pred) in zip(files, frames):
        written = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert written.shape == label_ids.shape and written.dtype == np.uint8
        np.testing.assert_array_equal(written, lut[pred])

    official = official_evaluation(root, out / "val", monkeypatch)
    assert "Score Average" in capsys.readouterr().out
    ours = dict(zip(info.class_names, result["iou"]))
    assert set(ours) <= set(official["classScores"])
    for name, iou in ours.items():
        np.testing.assert_allclose(official["classScores"][name], iou, atol=1e-6, err_msg=name)
    # NaN-free classes only, on both sides: absent-from-both classes do not enter either mean.
    assert np.isnan(ours["wall"]) and ours["bus"] == 0 and ours["bicycle"] == 0
    assert abs(official["averageScoreClasses"] - result["miou"]) < 1e-6


class StoredSizes:
    """A source that only knows frame sizes, as the writer sees a source."""

    def __init__(self, sizes):
        self.sizes = sizes

    def __len__(self):
        return len(self.sizes)

    def image_size(self, index):
        return self.sizes[index]


@pytest.mark.parametrize("official", [True, False])
def test_writer_writes_every_image_once_across_processes(tmp_path, official):
    root, out = tmp_path / "cityscapes", tmp_path / "results"
    make_frames(root, [(32, 64), (24, 48), (32, 64), (16, 64), (32, 48)])
    source = CityscapesSource(root, "val")
    config = eval_config(root, out, eval_batch_size=4)  # 2 per process: 3 batches, 1 padded
    info = get_info("cityscapes")
    written = 0
    for process in (0, 1):
        writer = cityscapes_export.PredictionWriter(
            source, out, "val", info, official=official, process_index=process,
            process_count=2)
        for batch in pipeline.eval_dataset(source, config, process, 2):
            writer.add(batch["label"].astype(np.uint8), batch["mask"])  # ground truth as pred
        written += writer.finish()
    assert written == len(source) == 5
    files = sorted((out / "val").rglob("*.png"))
    assert len(files) == 5
    lut = cityscapes_export.train_to_source_lut(info)
    for index in range(len(source)):
        path = writer.path(index)
        assert path.parent == (out / "val" / "frankfurt" if official else out / "val")
        expected = source[index]["label"]
        np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED),
                                      lut[expected] if official else expected)


def test_writer_undoes_padding_and_long_edge_resize(tmp_path):
    from data_pipelines import transforms

    for size in [(48, 100), (100, 48), (1024, 2048), (64, 64), (7, 300)]:
        label = np.zeros(size, np.uint8)
        if hasattr(transforms, "resize_long_edge"):  # the eval transform's resize
            _, resized = transforms.resize_long_edge(np.zeros((*size, 3), np.uint8), label, 64)
            assert cityscapes_export.eval_frame_size(size, 64) == resized.shape
    info = get_info("camvid")
    writer = cityscapes_export.PredictionWriter(StoredSizes([(48, 100)]), tmp_path, "val", info,
                                                official=False, long_edge=64)
    pred = np.random.default_rng(0).integers(0, 11, (1, 40, 70)).astype(np.uint8)
    writer.add(pred, np.array([True]))
    written = cv2.imread(str(tmp_path / "val" / "000000_pred_trainIds.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(
        written, cv2.resize(pred[0, :31, :64], (100, 48), interpolation=cv2.INTER_NEAREST))
