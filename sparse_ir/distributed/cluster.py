"""Connecting to Ray: the one place that imports it, with a clear error when it is missing."""

from __future__ import annotations

import logging

from sparse_ir.errors import MissingDependencyError

__all__ = ["import_ray", "init_ray"]

logger = logging.getLogger(__name__)


def import_ray():
    """The ``ray`` module, or :class:`MissingDependencyError` naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("Running on Ray", "ray[data]", "ray") from None
    return ray


def init_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
):
    """Connect to a Ray cluster, or start a local one; a no-op when Ray is already up.

    Args:
        address: ``"auto"`` (the cluster this machine is a node of), ``"ray://host:10001"``
            (Ray Client), ``"host:6379"``; None starts a local cluster on this machine.
        num_cpus: CPUs a *local* cluster offers (default: all); ignored when connecting.
        object_store_memory: bytes of a local cluster's object store (default: Ray's, 30% of
            memory); ignored when connecting.

    Returns the ``ray`` module. A local cluster started here runs without the dashboard.

    Example (not run here: it starts a cluster)::

        init_ray(num_cpus=2, object_store_memory=300 << 20)
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if address is None:
        ray.init(
            num_cpus=num_cpus,
            object_store_memory=object_store_memory,
            include_dashboard=False,
            log_to_driver=False,
        )
    else:
        ray.init(address=address, log_to_driver=False)
    logger.info("Ray: %s", ray.cluster_resources())
    return ray
