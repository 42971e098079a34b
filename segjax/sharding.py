"""Meshes, shardings and multi-process start-up.

Params and optimizer state are replicated and the batch is sharded over the `data` axis, so
under `jit` BatchNorm statistics, losses and confusion matrices are reduced over the global
batch without any explicit collective.

An optional `spatial` axis (`config.mesh.shape=(-1, 2)`, `config.mesh.axes=("data",
"spatial")`) also shards the image height: images `[B, H, W, 3]` and labels `[B, H, W]` are
`P("data", "spatial")`, so each device holds a band of rows of its images, and GSPMD
partitions the convolutions with halo exchanges. It is for large crops with few images per
device (1024x2048 with global batch 8 on 16 devices: data 8 x spatial 2).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
SPATIAL_AXIS = "spatial"


def make_mesh(shape: Sequence[int] = (-1,), axes: Sequence[str] = (DATA_AXIS,),
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh with Auto axis types (classic GSPMD propagation); one -1 entry takes the rest."""
    devices = list(jax.devices() if devices is None else devices)
    shape, axes = list(shape), tuple(axes)
    if len(shape) != len(axes):
        raise ValueError(f"mesh.shape {tuple(shape)} and mesh.axes {axes} differ in length")
    if DATA_AXIS not in axes:
        raise ValueError(f"mesh.axes {axes} must contain {DATA_AXIS!r}")
    if shape.count(-1) > 1:
        raise ValueError(f"mesh.shape {tuple(shape)} has more than one -1")
    known = int(np.prod([s for s in shape if s != -1]))
    if -1 in shape:
        if len(devices) % known:
            raise ValueError(f"{len(devices)} devices do not divide into mesh.shape {tuple(shape)}")
        shape[shape.index(-1)] = len(devices) // known
    if int(np.prod(shape)) != len(devices):
        raise ValueError(f"mesh.shape {tuple(shape)} needs {int(np.prod(shape))} devices, "
                         f"there are {len(devices)}")
    device_array = np.asarray(devices).reshape(shape)
    return Mesh(device_array, axes, axis_types=(jax.sharding.AxisType.Auto,) * len(axes))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_spec(mesh: Mesh, ndim: int = 1) -> P:
    """`P("data", "spatial")` for `[B, H, W, ...]` arrays (ndim >= 3) on a mesh with a
    spatial axis; `P("data")` otherwise (per-example vectors such as eval masks)."""
    if ndim >= 3 and SPATIAL_AXIS in mesh.axis_names:
        return P(DATA_AXIS, SPATIAL_AXIS)
    return P(DATA_AXIS)


def batch_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
    """The sharding of a batch array of rank `ndim` (see `batch_spec`)."""
    return NamedSharding(mesh, batch_spec(mesh, ndim))


def data_parallel_size(mesh: Mesh) -> int:
    return mesh.shape[DATA_AXIS]


def spatial_size(mesh: Mesh) -> int:
    """Devices along the image height (1 without a spatial axis)."""
    return dict(mesh.shape).get(SPATIAL_AXIS, 1)


def _mesh_shape(mesh: Mesh) -> str:
    return f"config.mesh.shape={tuple(mesh.devices.shape)} (axes {tuple(mesh.axis_names)})"


# Fewest image rows per device on the spatial axis: 2 rows at the 1/64 maps of DDRNet's
# deepest stage. XLA's SPMD partitioner (jax 0.10, CPU) computes a 3x3 convolution wrongly
# when a device holds a single row of its input (5x5: two rows; the forward itself is off, and
# DDRNet-23-slim's gradients with it), so thinner bands are refused rather than trusted.
MIN_ROWS_PER_DEVICE = 128


def check_height(height: int, mesh: Mesh, field: str = "data.crop_size",
                 min_rows: int = MIN_ROWS_PER_DEVICE) -> None:
    """The image height must split evenly over the spatial axis, in bands of at least
    `min_rows` rows."""
    s = spatial_size(mesh)
    if height % s:
        raise ValueError(
            f"Image height {height} (config.{field}) is not divisible by the {s} devices of "
            f"the mesh's {SPATIAL_AXIS!r} axis ({_mesh_shape(mesh)}); choose a height that "
            f"is a multiple of {s} or a smaller spatial axis")
    if s > 1 and height // s < min_rows:
        raise ValueError(
            f"Image height {height} (config.{field}) over the {s} devices of the mesh's "
            f"{SPATIAL_AXIS!r} axis ({_mesh_shape(mesh)}) leaves {height // s} rows per "
            f"device; at least {min_rows} are needed (2 rows at the 1/64 feature "
            "maps: XLA partitions a 3x3 convolution over single-row bands wrongly). Use a "
            "smaller spatial axis or taller images.")


def check_batch_size(global_batch: int, mesh: Mesh, field: str = "global_batch_size",
                     height: int | None = None, height_field: str = "data.crop_size") -> int:
    """Returns the per-process batch; the global batch must split evenly over the data axis
    (a spatial axis splits the height instead: `height`, when given, must divide by it)."""
    n = data_parallel_size(mesh)
    if global_batch % n:
        hint = (f"; or move devices to the {SPATIAL_AXIS!r} axis, e.g. config.mesh.shape="
                f"(-1, {mesh.size // np.gcd(global_batch, mesh.size)}) with config.mesh.axes="
                f"('data', 'spatial')" if SPATIAL_AXIS not in mesh.axis_names else "")
        raise ValueError(f"config.{field}={global_batch} is not divisible by the {n} devices of "
                         f"the mesh's {DATA_AXIS!r} axis ({_mesh_shape(mesh)}); choose a "
                         f"multiple of {n}{hint}")
    if global_batch % jax.process_count():
        raise ValueError(f"config.{field}={global_batch} is not divisible by "
                         f"{jax.process_count()} processes")
    if height is not None:
        check_height(int(height), mesh, height_field)
    return global_batch // jax.process_count()


def _check_spatial_within_processes(mesh: Mesh) -> None:
    """Each process loads whole images, so its devices must hold every band of their rows."""
    if SPATIAL_AXIS not in mesh.axis_names or jax.process_count() == 1:
        return
    axis = mesh.axis_names.index(SPATIAL_AXIS)
    devices = np.moveaxis(mesh.devices, axis, -1).reshape(-1, mesh.shape[SPATIAL_AXIS])
    for group in devices:
        if len({d.process_index for d in group}) > 1:
            raise ValueError(
                f"The {SPATIAL_AXIS!r} axis of {_mesh_shape(mesh)} spans several processes; "
                "each process loads whole images, so keep the spatial axis within one "
                f"process's {jax.local_device_count()} devices")


def to_global(local_batch: dict, mesh: Mesh) -> dict:
    """Assembles each process's examples into global arrays sharded by `batch_sharding`.

    Every process holds whole images of its share of the batch; with a spatial axis each
    of its devices receives a band of rows of them.
    """
    _check_spatial_within_processes(mesh)
    out = {}
    for k, v in local_batch.items():
        v = np.asarray(v)
        if v.ndim >= 3:
            check_height(v.shape[1], mesh, f"{k} height of this batch; data.crop_size for "
                         "training, the eval frame size for evaluation")
        global_shape = (v.shape[0] * jax.process_count(), *v.shape[1:])
        out[k] = jax.make_array_from_process_local_data(
            batch_sharding(mesh, v.ndim), v, global_shape)
    return out


def process_local(array: jax.Array) -> np.ndarray:
    """This process's block of a batch-sharded global array (its rows, whole images).

    Works for `P("data")` and `P("data", "spatial")`: the shards' bands are put back
    together; replicas along other mesh axes are read once.
    """
    shards = array.addressable_shards
    bounds = [[s.index[d].indices(array.shape[d])[:2] for s in shards]
              for d in range(array.ndim)]
    lo = [min(b[0] for b in dim) for dim in bounds]
    hi = [max(b[1] for b in dim) for dim in bounds]
    out = np.empty([h - low for low, h in zip(lo, hi)], array.dtype)
    for shard in shards:
        where = tuple(slice(a - low, b - low) for (a, b), low in
                      zip((s.indices(n)[:2] for s, n in zip(shard.index, array.shape)), lo))
        out[where] = np.asarray(shard.data)
    return out


_CLUSTER_HINTS = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")


def describes_several_processes(environ=os.environ) -> bool:
    """True when the environment is one process of a multi-process job."""
    if any(environ.get(k) for k in _CLUSTER_HINTS):
        return True
    for key in ("JAX_NUM_PROCESSES", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        if int(environ.get(key, "1") or 1) > 1:
            return True
    hosts = environ.get("TPU_WORKER_HOSTNAMES", "")
    return len([h for h in hosts.split(",") if h]) > 1


def maybe_initialize_distributed(environ=os.environ) -> bool:
    """Calls `jax.distributed.initialize` when the environment describes a multi-process job.

    Explicit JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID win; otherwise JAX
    detects the cluster itself (Cloud TPU, SLURM, Open MPI). A process whose peers do not
    connect gives up after SEGJAX_DISTRIBUTED_TIMEOUT_S seconds (default 300) instead of
    waiting forever; on CPU, cross-process collectives use gloo unless
    JAX_CPU_COLLECTIVES_IMPLEMENTATION says otherwise.
    """
    if not describes_several_processes(environ):
        return False
    if not environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    timeout = int(environ.get("SEGJAX_DISTRIBUTED_TIMEOUT_S") or 300)
    kwargs = {"initialization_timeout": timeout, "heartbeat_timeout_seconds": min(timeout, 100),
              "shutdown_timeout_seconds": timeout}
    address = environ.get("JAX_COORDINATOR_ADDRESS") or environ.get("COORDINATOR_ADDRESS")
    if address:
        kwargs["coordinator_address"] = address
        if environ.get("JAX_NUM_PROCESSES"):
            kwargs["num_processes"] = int(environ["JAX_NUM_PROCESSES"])
        if environ.get("JAX_PROCESS_ID"):
            kwargs["process_id"] = int(environ["JAX_PROCESS_ID"])
        if environ.get("JAX_LOCAL_DEVICE_IDS"):
            ids = environ["JAX_LOCAL_DEVICE_IDS"].split(",")
            kwargs["local_device_ids"] = [int(i) for i in ids]
    jax.distributed.initialize(**kwargs)
    return True
