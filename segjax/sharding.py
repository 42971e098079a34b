"""Meshes, shardings and multi-process start-up.

Params and optimizer state are replicated and the batch is sharded over the `data` axis, so
under `jit` BatchNorm statistics, losses and confusion matrices are reduced over the global
batch without any explicit collective.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


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


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def data_parallel_size(mesh: Mesh) -> int:
    return mesh.shape[DATA_AXIS]


def check_batch_size(global_batch: int, mesh: Mesh, field: str = "global_batch_size") -> int:
    """Returns the per-process batch; the global batch must split evenly over devices."""
    n = data_parallel_size(mesh)
    if global_batch % n:
        raise ValueError(f"config.{field}={global_batch} is not divisible by the {n} devices of "
                         f"the mesh's {DATA_AXIS!r} axis; choose a multiple of {n}")
    if global_batch % jax.process_count():
        raise ValueError(f"config.{field}={global_batch} is not divisible by "
                         f"{jax.process_count()} processes")
    return global_batch // jax.process_count()


def to_global(local_batch: dict, mesh: Mesh) -> dict:
    """Assembles each process's slice into one batch-sharded global array."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in local_batch.items()}


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
    detects the cluster itself (Cloud TPU, SLURM, Open MPI).
    """
    if not describes_several_processes(environ):
        return False
    kwargs = {}
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
