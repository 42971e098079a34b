"""`--mode=predict`: images on disk → label PNGs, colourised labels and overlays.

    python run.py --config=configs/bcmfnet_cityscapes.py --mode=predict --workdir=RUN \
        --config.predict.input='/data/frames/*.png' [--config.predict.output_dir=OUT] \
        [--config.predict.label_format=labelids]

Every image is predicted at its own resolution by the evaluation's Predictor (same views,
same padding to the model's stride), one compiled program per distinct image size.
"""

from __future__ import annotations

import glob
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from segjax import inference, xla_cpu

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


def predict_images(predictor: inference.Predictor, variables, files, out_dir, info, *,
                   label_format: str = "trainids", overlays: bool = True,
                   show_progress: bool = False, compiler_options: dict | None = None
                   ) -> dict[str, Any]:
    """Writes `labels/`, `color/` and (optionally) `overlay/` PNGs for every file."""
    import cv2

    from data_pipelines import imread, metadata

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
    labels_of = jax.jit(predictor.labels, compiler_options=compiler_options)
    sizes = set()
    for path in tqdm(files, desc="predict", unit="img", disable=not show_progress):
        rgb = imread(path, cv2.IMREAD_COLOR_RGB, "image")
        sizes.add(rgb.shape[:2])
        pred = np.asarray(labels_of(variables, jnp.asarray(rgb[None])))[0]
        stem = path.stem
        label = lut[pred] if lut is not None else pred
        cv2.imwrite(str(out_dir / "labels" / f"{stem}.png"), label)
        color = metadata.colorize(pred, info)
        cv2.imwrite(str(out_dir / "color" / f"{stem}.png"), color[..., ::-1])
        if overlays:
            blend = metadata.overlay(rgb, pred, info)
            cv2.imwrite(str(out_dir / "overlay" / f"{stem}.png"), blend[..., ::-1])
    return {"num_images": len(files), "output_dir": str(out_dir),
            "compiled_sizes": sorted(sizes)}


def predict(config, workdir: str) -> dict[str, Any]:
    """Restores the latest checkpoint in `workdir` and predicts `config.predict.input`."""
    from segjax import runtime

    p = config.predict
    files = list_images(p.input)
    if p.label_format not in LABEL_FORMATS:
        raise ValueError(f"config.predict.label_format={p.label_format!r}; choose "
                         f"{' or '.join(LABEL_FORMATS)}")
    options = xla_cpu.for_config(config, "inference")
    out_dir = pathlib.Path(p.output_dir or pathlib.Path(workdir) / "predictions")
    restored = runtime.restore(config, workdir)
    result = predict_images(restored.predictor, restored.variables, files, out_dir,
                            restored.info, label_format=p.label_format,
                            overlays=bool(p.overlays), show_progress=True,
                            compiler_options=options)
    print(f"step {restored.step}: wrote {result['num_images']} predictions to {out_dir} "
          f"(labels/ as {p.label_format}, color/, {'overlay/' if p.overlays else ''})",
          flush=True)
    return result
