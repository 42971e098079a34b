"""Full-image evaluation: a global integer confusion matrix over every image exactly once.

The eval iterator pads the last batch with masked examples (and every process runs the same
number of batches), the jitted step counts `num_classes * gt + pred` over the batch-sharded
global arrays, and the per-class IoU is computed once on the host at the end.
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from data_pipelines.metadata import IGNORE_LABEL
from segjax import inference, metrics, runtime, sharding, xla_cpu


def make_eval_step(predictor: inference.Predictor, num_classes: int, mesh,
                   ignore_label: int = IGNORE_LABEL, compiler_options: dict | None = None):
    """Jitted (variables, batch) -> (confusion matrix, uint8 predictions)."""

    def eval_step(variables, batch):
        label = batch["label"].astype(jnp.int32)
        pred = predictor.labels(variables, batch["image"], label.shape[1:3])
        cm = metrics.confusion_matrix(pred.astype(jnp.int32), label, num_classes,
                                      ignore_label=ignore_label, mask=batch["mask"])
        return cm, pred

    repl = sharding.replicated(mesh)
    pixels = sharding.batch_sharding(mesh, ndim=3)  # P("data"[, "spatial"]): bands of rows
    batch = {"image": pixels, "label": pixels, "mask": sharding.batch_sharding(mesh)}
    return jax.jit(eval_step, in_shardings=(repl, batch), out_shardings=(repl, pixels),
                   compiler_options=compiler_options)


def overlay_panels(images, labels, preds, info) -> np.ndarray:
    """uint8 RGB image | ground truth overlay | prediction overlay, side by side, in the
    dataset palette."""
    from data_pipelines import metadata

    panels = []
    for img, lab, pred in zip(np.asarray(images), np.asarray(labels), np.asarray(preds)):
        gt = metadata.overlay(img, lab, info)
        pr = metadata.overlay(img, pred, info)
        panels.append(np.concatenate([img, gt, pr], axis=1))
    return np.stack(panels)


def run_evaluation(model, variables, config, mesh, *, info, num_images_to_log: int = 0
                   ) -> tuple[dict, np.ndarray | None]:
    """Evaluates `variables` on the configured eval split; returns (result, overlay panels)."""
    from data_pipelines import pipeline

    sharding.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
    predictor = runtime.predictor(config, model)
    eval_step = make_eval_step(
        predictor, info.num_classes, mesh, info.ignore_label,
        xla_cpu.for_config(config, "inference", mesh.devices.flat[0].platform))
    accumulator = metrics.ConfusionAccumulator(info.num_classes)
    writer = None
    if config.get("eval_write_predictions", ""):
        from segjax.cityscapes_export import PredictionWriter

        writer = PredictionWriter.from_config(config, info)
    panels = None
    start = time.time()
    num_images = 0
    skipped_before = pipeline.skipped_examples("eval")
    for batch in pipeline.make_eval_iterator(config):
        num_images += int(np.asarray(batch["mask"]).sum())
        pixels = int(np.asarray(batch["label"]).size) * jax.process_count()
        global_batch = sharding.to_global(batch, mesh)
        cm, pred = eval_step(variables, global_batch)
        accumulator.add(cm, pixels)
        if writer is not None:
            writer.add(pred, batch["mask"])
        if panels is None and num_images_to_log and jax.process_index() == 0:
            n = min(num_images_to_log, len(batch["image"]))
            local_pred = sharding.process_local(pred)[:n]
            panels = overlay_panels(batch["image"][:n], batch["label"][:n], local_pred, info)
    confusion = accumulator.result()
    result = metrics.compute_iou(confusion)
    result["confusion_matrix"] = confusion
    num_images = int(sum_over_processes(num_images))
    if config.data.get("skip_corrupt", False):  # unreadable images: masked out, counted here
        result["num_skipped"] = int(
            sum_over_processes(pipeline.skipped_examples("eval") - skipped_before))
    if writer is not None:
        result["num_predictions_written"] = int(sum_over_processes(writer.finish()))
    result.update(num_images=num_images, seconds=time.time() - start,
                  mode=predictor.view.describe())
    return result, panels


def sum_over_processes(value: int) -> int:
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return int(np.sum(multihost_utils.process_allgather(np.asarray(value))))


def report(result: dict, info, step: int, workdir: str | pathlib.Path | None,
           dataset: str | None = None) -> dict:
    """Prints the per-class table and writes `eval_step_<step>.json` in the workdir.

    `dataset` names the data when it differs from the class table (synthetic scenes use
    Cityscapes' classes).
    """
    dataset = dataset or info.name
    table = metrics.format_table(result, info.class_names)
    logging.info("Evaluation at step %d: mIoU %.4f over %d %s images (mode=%s)", step,
                 result["miou"], result["num_images"], dataset, result["mode"])
    summary = metrics.metrics_to_dict(result, info.class_names)
    payload = {"step": int(step), "dataset": dataset, "mode": result["mode"],
               "num_images": result["num_images"], **summary}
    if "num_skipped" in result:
        payload["num_skipped"] = result["num_skipped"]
        if result["num_skipped"]:
            logging.warning("%d unreadable %s images were skipped and are not in the metrics",
                            result["num_skipped"], dataset)
    if workdir is not None and jax.process_index() == 0:
        path = pathlib.Path(workdir) / f"eval_step_{int(step)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2) + "\n")
    if jax.process_index() == 0:
        print(table, flush=True)
        print(f"step {int(step)}: mIoU={100 * result['miou']:.2f} over {result['num_images']} "
              f"{dataset} images (views: {result['mode']})", flush=True)
    return payload


def evaluate(config, workdir: str) -> dict[str, Any]:
    """`--mode=evaluate`: restores the latest checkpoint in `workdir` and evaluates it."""
    from data_pipelines import build_source

    build_source(config.dataset, config.dataset.eval_split)  # fail on missing data before compiling
    restored = runtime.restore(config, workdir)
    result, _ = run_evaluation(restored.model, restored.variables, config, restored.mesh,
                               info=restored.info)
    return report(result, restored.info, restored.step, workdir, config.dataset.name)
