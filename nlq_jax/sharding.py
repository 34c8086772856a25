"""Meshes and shardings: one code path from 1 CPU to many hosts.

The mesh has one axis, "data", over all global devices. Batches are split along it; parameters
and optimizer state are replicated, or, with `fsdp=True`, each array's largest dimension that
the device count divides is split along "data" too (ZeRO-3 / FSDP style: XLA gathers them for
the forward and scatters the gradients). Multi-host runs call `initialize_distributed` first;
everything else is the same.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA = "data"


def initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """`jax.distributed.initialize` when this is a multi-process run, else nothing.

    Arguments default to the environment (NLQ_COORDINATOR, NLQ_NUM_PROCESSES, NLQ_PROCESS_ID);
    on managed clusters (SLURM, TPU pods) JAX finds them itself when NLQ_DISTRIBUTED=1.
    """
    coordinator = coordinator or os.environ.get("NLQ_COORDINATOR")
    if num_processes is None and "NLQ_NUM_PROCESSES" in os.environ:
        num_processes = int(os.environ["NLQ_NUM_PROCESSES"])
    if process_id is None and "NLQ_PROCESS_ID" in os.environ:
        process_id = int(os.environ["NLQ_PROCESS_ID"])
    if coordinator is None and os.environ.get("NLQ_DISTRIBUTED") != "1":
        return
    # CPU collectives across processes need gloo (harmless for GPU/TPU backends). Nothing
    # here may touch jax.devices(): initialize must come before the backend starts.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes, process_id)


def make_mesh() -> Mesh:
    """A 1-D mesh over every device of every process."""
    return Mesh(np.asarray(jax.devices()), (DATA,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Batches: leading axis split over "data"."""
    return NamedSharding(mesh, PartitionSpec(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def state_shardings(abstract_state, mesh: Mesh, fsdp: bool = False):
    """Shardings for a pytree of arrays (from `jax.eval_shape`): replicated, or FSDP."""
    n = mesh.devices.size

    def one(leaf):
        shape = getattr(leaf, "shape", ())
        if not fsdp or n == 1 or not shape:
            return replicated(mesh)
        # Split the largest dimension the device count divides; small arrays stay replicated.
        if int(np.prod(shape)) < 4096:
            return replicated(mesh)
        for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
            if shape[axis] % n == 0:
                spec = [None] * len(shape)
                spec[axis] = DATA
                return NamedSharding(mesh, PartitionSpec(*spec))
        return replicated(mesh)

    return jax.tree_util.tree_map(one, abstract_state)


def global_batch(local: dict, mesh: Mesh) -> dict:
    """This process's part of a batch → global arrays sharded over "data"."""
    sharding = batch_sharding(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()
    }
