"""`--mode=predict`: images on disk → label PNGs, colourised labels and overlays.

    python run.py --config=configs/bcmfnet_cityscapes.py --mode=predict --workdir=RUN \
        --config.predict.input='/data/frames/*.png' [--config.predict.output_dir=OUT] \
        [--config.predict.label_format=labelids]

Every image is predicted at its own resolution: it is padded at the bottom/right to a
multiple of `predict.pad_to_multiple` (so every architecture's strides divide it), the
logits are cropped back, and one program is compiled per distinct padded size.
"""

from __future__ import annotations

import glob
import pathlib
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from segjax import inference

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
LABEL_FORMATS = ("trainids", "labelids")


def list_images(pattern: str) -> list[pathlib.Path]:
    """A folder (its images, sorted) or a glob pattern; errors name the field to fix."""
    if not pattern:
        raise ValueError("config.predict.input is empty: pass --config.predict.input=FOLDER "
                         "or a quoted glob such as '/data/*.png'")
    path = pathlib.Path(pattern).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        files = sorted(pathlib.Path(p) for p in glob.glob(str(path), recursive=True)
                       if pathlib.Path(p).suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"config.predict.input={pattern!r} matches no image "
                                f"({', '.join(IMAGE_SUFFIXES)})")
    return files


def pad_to_multiple(image: np.ndarray, multiple: int, fill=(0, 0, 0)) -> np.ndarray:
    """Pads an HxWx3 image bottom/right with `fill` to a multiple of `multiple`."""
    h, w = image.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    if not (ph or pw):
        return image
    padded = np.empty((h + ph, w + pw, image.shape[2]), image.dtype)
    padded[...] = np.asarray(fill, image.dtype)
    padded[:h, :w] = image
    return padded


def make_predict_fn(model, view: inference.ViewConfig | None = None,
                    norm: inference.InputNorm | None = None):
    """Jitted (variables, padded uint8 RGB batch, (H, W)) -> uint8 labels cropped to (H, W),
    using the configured evaluation views; `norm` normalises on the device."""
    apply = lambda v, x: model.apply(v, x, train=False)
    norm = norm or inference.InputNorm()

    def predict(variables, images, size):
        scores = inference.class_scores(apply, variables, norm(images), images.shape[1:3], view)
        return jnp.argmax(scores[:, :size[0], :size[1]], axis=-1).astype(jnp.uint8)

    return jax.jit(predict, static_argnums=2)


class Progress:
    """A one-line progress bar on stderr (rewritten in place on a terminal)."""

    def __init__(self, total: int, stream=sys.stderr, width: int = 30):
        self.total, self.stream, self.width = total, stream, width
        self.start = time.time()
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def update(self, done: int, name: str = "") -> None:
        filled = int(self.width * done / max(self.total, 1))
        rate = done / max(time.time() - self.start, 1e-9)
        line = (f"predict [{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} "
                f"{rate:.2f} img/s {name}")
        if self.tty:
            self.stream.write("\r" + line[:120].ljust(120))
            if done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def predict_images(model, variables, files, out_dir, info, data_cfg, *,
                   label_format: str = "trainids", pad_multiple: int = 32,
                   overlays: bool = True, view: inference.ViewConfig | None = None,
                   progress: Progress | None = None) -> dict[str, Any]:
    """Writes `labels/`, `color/` and (optionally) `overlay/` PNGs for every file."""
    import cv2

    from data_pipelines import imread, metadata
    from data_pipelines.transforms import mean_color

    if label_format not in LABEL_FORMATS:
        raise ValueError(f"config.predict.label_format={label_format!r}; choose "
                         f"{' or '.join(LABEL_FORMATS)}")
    lut = None
    if label_format == "labelids":
        if info.name != "cityscapes":
            raise ValueError("config.predict.label_format='labelids' writes Cityscapes label "
                             f"ids; the model's classes are {info.name}'s: use 'trainids'")
        from segjax.cityscapes_export import train_to_source_lut

        lut = train_to_source_lut(info)
    out_dir = pathlib.Path(out_dir)
    folders = ["labels", "color"] + (["overlay"] if overlays else [])
    for folder in folders:
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    predict = make_predict_fn(model, view, inference.InputNorm.from_config(data_cfg))
    fill = mean_color(data_cfg.mean, data_cfg.channel_order)  # normalises to 0
    sizes = set()
    for done, path in enumerate(files, start=1):
        rgb = imread(path, cv2.IMREAD_COLOR_RGB, "image")
        x = pad_to_multiple(rgb, pad_multiple, fill)[None]
        sizes.add(x.shape[1:3])
        pred = np.asarray(predict(variables, jnp.asarray(x), rgb.shape[:2]))[0]
        stem = path.stem
        label = lut[pred] if lut is not None else pred
        cv2.imwrite(str(out_dir / "labels" / f"{stem}.png"), label)
        color = metadata.colorize(pred, info)
        cv2.imwrite(str(out_dir / "color" / f"{stem}.png"), color[..., ::-1])
        if overlays:
            blend = metadata.overlay(rgb, pred, info)
            cv2.imwrite(str(out_dir / "overlay" / f"{stem}.png"), blend[..., ::-1])
        if progress is not None:
            progress.update(done, stem)
    return {"num_images": len(files), "output_dir": str(out_dir),
            "compiled_sizes": sorted(sizes)}


def predict(config, workdir: str) -> dict[str, Any]:
    """Restores the latest checkpoint in `workdir` and predicts `config.predict.input`."""
    from segjax import evaluate, train

    p = config.predict
    files = list_images(p.input)
    if p.label_format not in LABEL_FORMATS:
        raise ValueError(f"config.predict.label_format={p.label_format!r}; choose "
                         f"{' or '.join(LABEL_FORMATS)}")
    out_dir = pathlib.Path(p.output_dir or pathlib.Path(workdir) / "predictions")
    setup = train.setup(config, workdir)
    try:
        step, variables = evaluate.restore_latest(setup, workdir)
    finally:
        setup.checkpointer.close()
    result = predict_images(setup.model, variables, files, out_dir, setup.info, config.data,
                            label_format=p.label_format, pad_multiple=int(p.pad_to_multiple),
                            overlays=bool(p.overlays), view=evaluate.view_config(config),
                            progress=Progress(len(files)))
    print(f"step {step}: wrote {result['num_images']} predictions to {out_dir} "
          f"(labels/ as {p.label_format}, color/, {'overlay/' if p.overlays else ''})",
          flush=True)
    return result
