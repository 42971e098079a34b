"""Check the trainer against two SGD steps of the official PyTorch training code.

    python -m segjax.tools.train_parity --model ddrnet23_slim \
        --fixture ../shared/fixtures/train_step/ddrnet23_slim.json [--precision float64]

The fixture records the official run from the forward-parity weights: losses, per-tensor
gradient and update norms and random projections, BatchNorm running statistics. This tool
regenerates and converts those weights, builds the model's recipe config with the fixture's
loss and optimizer numbers, runs two steps of the trainer's own jitted train step
(`make_optimizer`, the loss registry, BatchNorm in train mode), and prints every metric
with its tolerance, then `max_ratio` (worst value / tolerance). Exit 1 when a metric is
over its tolerance. `--precision float64` runs JAX in 64 bits end to end (the decisive
check); float32 runs at matmul precision 'highest'.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import pathlib
import sys
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from segjax import cli, convert, inference, losses, models, runtime, sharding, train
from segjax.tools import parity

# The recipe whose loss and training semantics each fixture's official code defines.
RECIPES = {
    "ddrnet23_slim": "ddrnet23slim_cityscapes",
    "fchardnet70": "fchardnet70_cityscapes",
    "fassdnet": "fassdnet_cityscapes",
    "fassdnet_l1": "fassdnet_l1_cityscapes",
    "fassdnet_l2": "fassdnet_l2_cityscapes",
    "deeplabv3plus_r50": "deeplabv3plus_r50_cityscapes",
}
PRECISIONS = ("float64", "float32")
CONFIGS_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs"


class RecipeMismatchError(ValueError):
    """The recipe trains with another loss than the official code the fixture records."""


def fixture_loss_kind(loss: Mapping[str, Any]) -> str:
    """'ohem', 'bootstrap' or 'ce': which segjax loss the fixture's official function is."""
    if "min_kept" in loss:
        return "ohem"
    if "min_K" in loss:
        return "bootstrap"
    return "ce"


def load_recipe(model: str, config_path: str | None = None) -> ml_collections.ConfigDict:
    """The model's recipe config (`configs/<recipe>.py`), or the file given."""
    return cli.load_config(config_path or str(CONFIGS_DIR / f"{RECIPES[model]}.py"))


def fixture_config(recipe: ml_collections.ConfigDict, fixture: Mapping[str, Any],
                   precision: str, overrides: Mapping[str, Any] = ()) -> ml_collections.ConfigDict:
    """`recipe` with the fixture's batch, loss numbers and optimizer; the recipe keeps its
    loss kind and training semantics (OHEM scope, BatchNorm running variance), which the
    fixture checks. `overrides` (dotted key -> value) apply last."""
    loss, opt = fixture["loss"], fixture["optimizer"]
    kind = fixture_loss_kind(loss)
    if recipe.loss.name != kind:
        raise RecipeMismatchError(
            f"the recipe trains {fixture['model']} with loss {recipe.loss.name!r}; the "
            f"official code ({loss.get('source')}) uses {kind!r}")
    batch = int(fixture["batch"]["image"][0])
    config = ml_collections.ConfigDict(recipe.to_dict())
    config.dtype = precision
    config.global_batch_size = batch
    config.num_train_steps = int(opt["steps"])
    config.mesh.shape, config.mesh.axes = (1,), ("data",)
    config.init_checkpoint, config.model.pretrained = "", ""
    config.loss.ignore_label = int(fixture["batch"]["ignore_label"])
    if kind == "ohem":
        weights = loss["head_weights"]
        if weights["main"] != 1.0:
            raise ValueError(f"main head weight {weights['main']}: segjax weighs it 1")
        config.loss.ohem.thresh = float(loss["thresh"])
        config.loss.ohem.min_kept = int(loss["min_kept"])
        config.loss.ohem.min_kept_batch = batch  # the fixture's batch is one GPU's batch
        config.loss.class_weights = tuple(loss["class_weights"])
        config.loss.aux.weight = float(weights["aux"])
    elif kind == "bootstrap":
        config.loss.bootstrap.thresh = float(loss["loss_th"])
        config.loss.bootstrap.min_kept = int(loss["min_K"])
        config.loss.class_weights = tuple(loss.get("weight") or ())
    else:
        config.loss.class_weights = ()
    if opt["class"] != "torch.optim.SGD" or opt.get("dampening", 0):
        raise ValueError(f"optimizer {opt['class']} (dampening {opt.get('dampening')}) is "
                         "not PyTorch's plain SGD")
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = float(opt["lr"])
    config.optimizer.momentum = float(opt["momentum"])
    config.optimizer.nesterov = bool(opt["nesterov"])
    config.optimizer.weight_decay = float(opt["weight_decay"])
    config.optimizer.schedule = opt["schedule"]
    config.optimizer.warmup_steps = 0
    config.optimizer.decoder_lr_multiplier = config.optimizer.decoder_wd_multiplier = 1.0
    for key, value in dict(overrides).items():
        *parents, leaf = key.split(".")
        node = config
        for name in parents:
            node = node[name]
        if leaf not in node:
            raise KeyError(f"--set {key}: no such config field")
        node[leaf] = value
    return config


@dataclasses.dataclass
class StepRecord:
    """The port's side of the fixture's arrays (PyTorch names, layouts and order)."""
    loss: np.ndarray
    terms: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    deltas: dict[str, np.ndarray]
    bn_mean: np.ndarray
    bn_var: np.ndarray
    steps: int


def run_two_steps(config, fixture: Mapping[str, Any], manifest: Mapping[str, Any],
                  batch: Mapping[str, np.ndarray]) -> StepRecord:
    """Two steps of the trainer's jitted train step from the converted parity weights."""
    name, precision = config.model.name, config.dtype
    model = runtime.build_model(config, int(manifest["num_classes"]))
    state_dict = parity.make_state_dict(manifest["manifest"])
    height, width = batch["image"].shape[2:]
    template = convert.model_template(model, (1, height, width, 3))
    renames = models.key_renames(name)
    variables = convert.torch_to_flax(state_dict, template, renames=renames)
    paths = convert.flax_paths(state_dict, template, renames=renames)

    mesh = sharding.make_mesh((1,), ("data",), devices=jax.devices()[:1])
    tx, schedule = train.make_optimizer(config.optimizer, config.num_train_steps)
    state = jax.device_put(train.TrainState(
        step=np.zeros((), np.int32), params=variables["params"],
        batch_stats=variables["batch_stats"], opt_state=tx.init(variables["params"])),
        sharding.replicated(mesh))
    loss_cfg = losses.for_global_batch(config.loss, config.global_batch_size)
    step = train.make_train_step(model, tx, schedule, loss_cfg, mesh,
                                 inference.InputNorm.from_config(config.data),
                                 running_variance=config.bn_running_variance,
                                 return_grads=True)
    images = np.transpose(batch["image"], (0, 2, 3, 1)).astype(precision)
    device_batch = sharding.to_global({"image": images, "label": batch["label"]}, mesh)

    loss_values, terms, grads = [], {}, None
    initial = jax.device_get(state.params)
    for index in range(config.num_train_steps):
        state, scalars, step_grads = step(state, device_batch)
        scalars = jax.device_get(scalars)
        loss_values.append(float(scalars["loss"]))
        for key, value in scalars.items():
            if key.startswith("loss/"):
                terms.setdefault(key[len("loss/"):], []).append(float(value))
        if index == 0:
            grads = jax.device_get(step_grads)
    final = jax.device_get(state.variables())

    def torch_tensor(tree, key):
        collection, *path = paths[key]
        value = tree[collection] if collection in tree else tree
        for part in path:
            value = value[part]
        return convert.to_torch_layout(np.asarray(value, np.float64), path[-1])

    learnable = fixture["learnable_keys"]
    delta_tree = jax.tree.map(lambda a, b: np.asarray(a, np.float64) - np.asarray(b, np.float64),
                              final["params"], initial)
    stats = lambda leaf: np.concatenate([
        torch_tensor(final, f"{bn}.{leaf}") for bn in fixture["bn_keys"]])
    return StepRecord(
        loss=np.asarray(loss_values), terms={k: np.asarray(v) for k, v in terms.items()},
        grads={k: torch_tensor({"params": grads}, k) for k in learnable},
        deltas={k: torch_tensor({"params": delta_tree}, k) for k in learnable},
        bn_mean=stats("running_mean"), bn_var=stats("running_var"),
        steps=int(jax.device_get(state.step)))


def projection(key: str, shape: Sequence[int]) -> np.ndarray:
    """The fixture's R_k: a float32 normal draw seeded with crc32('proj:' + key)."""
    rng = np.random.default_rng(zlib.crc32(("proj:" + key).encode()))
    return rng.standard_normal(tuple(shape)).astype(np.float32).astype(np.float64)


def compute_metrics(record: StepRecord, fixture: Mapping[str, Any],
                    reference: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Every metric the fixture defines, against its float64 (`_f64`) arrays."""
    ref = lambda name: np.asarray(reference[f"{name}_f64"], np.float64)
    keys = fixture["learnable_keys"]
    zero = set(fixture.get("zero_gradient_keys", ()))
    checked = np.array([k not in zero for k in keys])

    def tensor_metrics(kind, tensors):
        norm = np.array([np.linalg.norm(tensors[k].ravel()) for k in keys])
        proj = np.array([np.sum(tensors[k] * projection(k, tensors[k].shape)) for k in keys])
        norm_r, proj_r = ref(f"{kind}_norm"), ref(f"{kind}_proj")
        mask = checked if kind == "grad" else np.ones_like(checked)
        return {
            f"{kind}_norm": np.max(np.abs(norm - norm_r)[mask] / norm_r[mask]),
            f"{kind}_proj": np.max(np.abs(proj - proj_r)[mask] / norm_r[mask]),
            f"{kind}_global": (np.sqrt(np.sum((proj - proj_r)[mask] ** 2))
                               / np.sqrt(np.sum(norm_r[mask] ** 2))),
        }, norm

    loss_r = ref("loss")
    metrics = {"loss_step1": abs(record.loss[0] - loss_r[0]) / abs(loss_r[0]),
               "loss_step2": abs(record.loss[1] - loss_r[1]) / abs(loss_r[1])}
    if "loss_terms" in fixture["metrics"]:
        metrics["loss_terms"] = max(
            np.max(np.abs(record.terms[head] - ref(f"loss_{head}")) / np.abs(ref(f"loss_{head}")))
            for head in fixture["loss"]["head_weights"])
    grad_metrics, grad_norm = tensor_metrics("grad", record.grads)
    metrics.update(grad_metrics)
    if zero:
        metrics["zero_grad"] = np.max(grad_norm[~checked]) / np.max(ref("grad_norm"))
    metrics.update(tensor_metrics("delta", record.deltas)[0])
    var_r = ref("bn_running_var")
    metrics["bn_running_mean"] = np.max(np.abs(record.bn_mean - ref("bn_running_mean"))
                                        / np.sqrt(var_r))
    metrics["bn_running_var"] = np.max(np.abs(record.bn_var - var_r) / var_r)
    return {name: float(metrics[name]) for name in fixture["metrics"] if name in metrics}


@dataclasses.dataclass
class ParityReport:
    metrics: dict[str, float]
    tolerances: dict[str, float]
    steps: int
    expected_steps: int

    @property
    def ratios(self) -> dict[str, float]:
        return {k: v / self.tolerances[k] for k, v in self.metrics.items()}

    @property
    def max_ratio(self) -> float:
        return max(self.ratios.values())

    def ok(self) -> bool:
        return self.max_ratio <= 1.0 and self.steps == self.expected_steps


def check_fixture(model: str, fixture_path: str, manifest_path: str | None = None,
                  precision: str = "float64", config_path: str | None = None,
                  overrides: Mapping[str, Any] = ()) -> ParityReport:
    """Run the fixture's two steps through the trainer and measure every metric."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision {precision!r}; choose one of {PRECISIONS}")
    fixture_path = pathlib.Path(fixture_path)
    fixture = json.loads(fixture_path.read_text())
    if fixture["model"] != model:
        raise ValueError(f"--fixture {fixture_path} is for {fixture['model']!r}, not {model!r}")
    if manifest_path is None:
        manifest_path = fixture_path.parent.parent / "parity" / f"{model}.json"
    manifest = json.loads(pathlib.Path(manifest_path).read_text())
    reference = np.load(fixture_path.parent / fixture["npz"])
    batch = np.load(fixture_path.parent / fixture["batch"]["file"])
    config = fixture_config(load_recipe(model, config_path), fixture, precision, overrides)
    x64 = jax.enable_x64(True) if precision == "float64" else contextlib.nullcontext()
    with x64, jax.default_matmul_precision("highest"):
        record = run_two_steps(config, fixture, manifest, batch)
    metrics = compute_metrics(record, fixture, reference)
    tier = fixture["tolerances"][precision]
    return ParityReport(metrics, {k: float(tier[k]) for k in metrics}, record.steps,
                        int(fixture["optimizer"]["steps"]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, choices=sorted(RECIPES))
    parser.add_argument("--fixture", required=True, help="train_step/<model>.json")
    parser.add_argument("--manifest", help="parity/<model>.json (default: beside the "
                        "fixture folder, ../parity/<model>.json)")
    parser.add_argument("--precision", default="float64", choices=PRECISIONS)
    parser.add_argument("--config", help="recipe file (default: the model's Cityscapes recipe)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override after the fixture's values, e.g. "
                             "optimizer.momentum=0.91 (repeatable)")
    args = parser.parse_args(argv)
    try:
        report = check_fixture(args.model, args.fixture, args.manifest, args.precision,
                               args.config, cli.parse_key_values(args.set))
    except (FileNotFoundError, KeyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name, value in report.metrics.items():
        verdict = "ok" if value <= report.tolerances[name] else "FAIL"
        print(f"{name:16s} {value:.3e}  tol {report.tolerances[name]:.0e}  {verdict}")
    print(f"steps={report.steps} expected={report.expected_steps}")
    print(f"max_ratio={report.max_ratio:.3e}")
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
