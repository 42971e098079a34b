"""Data sources and input pipelines for segjax.

Only light modules are imported here so that `import data_pipelines` never pulls in
TensorFlow; dataset modules load on demand in `build_source`.
"""

DATASETS = ("synthetic", "camvid", "cityscapes", "mapillary")


class DataError(ValueError):
    """Bad or missing dataset files; the message names the path and the fix."""


def imread(path, flags, kind):
    """cv2.imread that names the file instead of returning None on a bad one."""
    import cv2

    fix = ("replace the file, or set --config.data.skip_corrupt=True to skip unreadable "
           "examples")
    try:
        array = cv2.imread(str(path), flags)
    except cv2.error as e:
        raise DataError(f"cannot decode {kind} {path}: {e}; {fix}") from e
    if array is None:
        raise DataError(f"cannot decode {kind} {path}: unreadable or corrupt file; {fix}")
    return array


def build_source(dataset_cfg, split):
    """Returns the random-access source (`len`, `[i]`) for `dataset_cfg.name` and `split`.

    Synthetic data is a fixed dataset, not part of the training randomness, so its
    content seed comes from `dataset_cfg.seed` (default 0, the eval split uses seed+1)
    rather than from the run seed.
    """
    name = dataset_cfg.name
    if name == "synthetic":
        from data_pipelines.synthetic import SyntheticStreetScenes

        height, width = dataset_cfg.image_size
        seed = int(dataset_cfg.get("seed", 0))
        if split == dataset_cfg.get("train_split", "train"):
            return SyntheticStreetScenes(int(dataset_cfg.num_train), height, width, seed)
        return SyntheticStreetScenes(int(dataset_cfg.num_eval), height, width, seed + 1)
    if name == "camvid":
        from data_pipelines.camvid import make_source

        return make_source(dataset_cfg.get("root", None), split,
                           dataset_cfg.get("camvid_format", "segnet"))
    if name == "cityscapes":
        storage = dataset_cfg.get("format", "directory")
        if storage == "tfds":
            from data_pipelines.cityscapes_tfds import source_from_config

            return source_from_config(dataset_cfg, split)
        if storage != "directory":
            raise DataError(f"config.dataset.format={storage!r}; Cityscapes is read from "
                            "'directory' (config.dataset.root) or 'tfds' "
                            "(config.dataset.tfds_data_dir).")
        from data_pipelines.cityscapes import CityscapesSource

        return CityscapesSource(dataset_cfg.get("root", None), split)
    if name == "mapillary":
        from data_pipelines.mapillary import MapillarySource

        return MapillarySource(dataset_cfg.get("root", None), split)
    raise DataError(
        f"Unknown dataset name {name!r}; valid names: {', '.join(DATASETS)}. "
        "Set --config.dataset.name to one of them."
    )
