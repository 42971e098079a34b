"""Data sources and input pipelines for segjax.

Only light modules are imported here so that `import data_pipelines` never pulls in
TensorFlow, grain or cv2; dataset modules load on demand in `build_source`, through
`metadata.REGISTRY`.
"""

from data_pipelines.metadata import DATASETS, REGISTRY


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
    """Returns the random-access source (`len`, `[i]`) for `dataset_cfg.name` and `split`,
    built by that name's entry in `metadata.REGISTRY`."""
    name = dataset_cfg.name
    try:
        dataset = REGISTRY[name]
    except (KeyError, TypeError):
        raise DataError(
            f"Unknown dataset name {name!r}; valid names: {', '.join(DATASETS)}. "
            "Set --config.dataset.name to one of them."
        ) from None
    return dataset.build_source(dataset_cfg, split)
