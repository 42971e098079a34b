"""Helpers shared by several test modules (test modules never import each other)."""

import functools
import hashlib
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from configs import quickstart
from segjax import convert, sharding, train

REPO = pathlib.Path(__file__).resolve().parents[1]


def tiny_config(narrow=True, **overrides):
    """The quickstart recipe shrunk to seconds: a narrow DDRNet-23 on 64x64 crops."""
    config = quickstart.get_config()
    if narrow:
        with config.unlocked():
            config.model.kwargs.update(planes=8, spp_planes=16, head_planes=16)
    config.dataset.image_size = (64, 96)
    config.dataset.num_train = 32
    config.dataset.num_eval = 5
    config.data.crop_size = (64, 64)
    config.global_batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = 4
    config.log_every_steps = 1
    config.eval_every_steps = 100
    config.checkpoint_every_steps = 2
    config.num_eval_images_to_log = 2
    config.optimizer.warmup_steps = 0
    config.optimizer.learning_rate = 1e-3
    return override(config, **overrides)


def override(config, **dotted):
    """Sets `{"a.b": v}` fields, as `--config.a.b=v` would."""
    for key, value in dotted.items():
        target = config
        *path, leaf = key.split(".")
        for p in path:
            target = getattr(target, p)
        setattr(target, leaf, value)
    return config


def max_abs_diff(a, b):
    fa, fb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(fa) == len(fb)
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(fa, fb))


def assert_trees_close(a, b, tol=1e-5):
    paths_a = jax.tree_util.tree_leaves_with_path(a)
    leaves_b = jax.tree.leaves(b)
    assert len(paths_a) == len(leaves_b)
    for (path, x), y in zip(paths_a, leaves_b):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                                   rtol=tol, atol=tol, err_msg=jax.tree_util.keystr(path))


def tensorboard_tags(logdir):
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    acc.Reload()
    by_plugin = {"scalars": set(), "images": set()}
    for tag in acc.Tags()["tensors"]:
        plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
        by_plugin.setdefault(plugin, set()).add(tag)
    return by_plugin


def param_count(model, size=(64, 64)):
    return convert.count_params(convert.model_template(model, (1, *size, 3)))


class StepSpy:
    """Stands in for the compiled train step: records the state each step starts from and
    adds 1 to every param, BatchNorm statistic and optimizer slot, so that the loop,
    checkpoints and init can be checked without compiling a model's backward pass."""

    def __init__(self):
        self.starts = []
        self.add_one = jax.jit(lambda tree: jax.tree.map(lambda p: p + 1.0, tree))

    def make(self, *args, **kwargs):
        def step(state, batch):
            self.starts.append(jax.device_get(state))
            new = state.replace(step=state.step + 1, params=self.add_one(state.params),
                                batch_stats=self.add_one(state.batch_stats),
                                opt_state=self.add_one(state.opt_state))
            return new, {"loss": jnp.float32(1)}
        return step


def zero_init_state(model, tx, rng, input_shape, mesh):
    """`train.init_state` with all-zero variables: the same tree and shardings without
    compiling the random initialisers (tens of CPU-seconds even for the tiny model)."""
    shapes = jax.eval_shape(
        lambda: model.init(rng, jnp.zeros(input_shape, jnp.float32), train=False))
    variables = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    state = jax.jit(lambda v: train.TrainState(
        step=jnp.zeros((), jnp.int32), params=v["params"], batch_stats=v["batch_stats"],
        opt_state=tx.init(v["params"])))(variables)
    return jax.device_put(state, sharding.replicated(mesh))


def stub_training(mp, spy):
    """The real loop, checkpointing and init_checkpoint, with the model's compiled work
    (init, train step, evaluation) stubbed and a one-device mesh (fewer shards to save)."""
    mp.setattr(train, "init_state", zero_init_state)
    mp.setattr(train, "make_train_step", spy.make)
    mp.setattr(train, "_evaluate", lambda *args, **kwargs: {})
    mp.setattr(sharding, "make_mesh",
               functools.partial(sharding.make_mesh, devices=jax.devices()[:1]))


def param_tree_fingerprint(model, input_shape=(1, 64, 64, 3)) -> dict:
    """Leaf count and sha256 of every params/batch_stats path, shape and dtype: what a
    checkpoint's tree must match to restore."""
    x = jax.ShapeDtypeStruct(input_shape, jnp.float32)
    tree = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    leaves = jax.tree_util.tree_leaves_with_path(
        {k: tree[k] for k in ("params", "batch_stats") if k in tree})
    lines = sorted(f"{jax.tree_util.keystr(p)} {tuple(a.shape)} {a.dtype}" for p, a in leaves)
    return {"leaves": len(lines), "sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest()}


# The quickstart recipe shrunk to a one-block-per-stage DDRNet on 64x64 crops. Plain SGD at
# a small constant LR: unoptimised XLA code sums gradients less accurately (1e-3 relative
# between device counts), and the LR scales that into the params; Adam would undo it.
TINY_CONFIG = """
from configs import quickstart


def get_config():
    config = quickstart.get_config()
    with config.unlocked():
        config.model.kwargs.update(planes=8, spp_planes=16, head_planes=16,
                                   layers=(1, 1, 1, 1), aux_head=False)
    config.loss.aux.weight = 0.0
    config.dataset.image_size = (64, 96)
    config.dataset.num_train = 32
    config.dataset.num_eval = 5
    config.data.crop_size = (64, 64)
    config.global_batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = {steps}
    config.log_every_steps = 1
    config.eval_every_steps = 100
    config.checkpoint_every_steps = 100
    config.num_eval_images_to_log = 1
    config.optimizer.name = "sgd"
    config.optimizer.momentum = 0.0
    config.optimizer.schedule = "constant"
    config.optimizer.warmup_steps = 0
    config.optimizer.learning_rate = 0.001
    return config
"""


def parity_variables(model_name: str, parity_dir, input_shape=(1, 64, 128, 3)):
    """(model, variables) with 19 classes: the official code's regenerated parity weights
    where a fixture exists (the synergy model shares DeepLabv3+'s), else random ones scaled
    so the logits stay O(1-100) and vary (MSFNet's deep trunk needs He scaling for that)."""
    import json

    from segjax import inference, models
    from segjax.tools import parity

    source = "deeplabv3plus_r50" if model_name.startswith("synergy") else model_name
    manifest = pathlib.Path(parity_dir) / f"{source}.json"
    model = models.build(model_name, 19)
    if not manifest.exists():
        scale = None if model_name == "msfnet" else 0.05
        return model, inference.random_variables(model, input_shape, scale=scale)
    meta = json.loads(manifest.read_text())
    _, variables = convert.convert_for_model(source, parity.make_state_dict(meta["manifest"]),
                                             meta["num_classes"])
    return model, variables
