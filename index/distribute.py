"""Where the shards of a build run: in this process one after another, or on Ray workers.

A distributor maps a worker over tasks: `map(make_worker, tasks)` builds the worker once per process
(`make_worker()`, e.g. a generator loaded from its checkpoint) and yields each task's result as it
finishes, in any order. What a task does lives in index.sharded; how tasks travel lives here, so a
further engine (Slurm, Spark) is one more class with the same two methods.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Callable, Iterator, Protocol, Sequence, TypeVar

from facedata.errors import UserError

T = TypeVar("T")
R = TypeVar("R")

ENGINES = ("local", "ray")
# Set before Ray is imported (it reads them then): no usage statistics; and for a local cluster, the
# loopback address as this node's (not the host's other one) and no token file.
RAY_ENVIRONMENT = {"RAY_USAGE_STATS_ENABLED": "0"}
LOCAL_RAY_ENVIRONMENT = {**RAY_ENVIRONMENT, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
CONNECT_SECONDS = 10  # a cluster address that does not answer this fast is refused (Ray itself retries for minutes)
INSTALL_HINT = "pip install 'retrieval-by-generation[ray]'"


class Distributor(Protocol):
    """Runs one kind of worker over a list of tasks."""

    workers: int

    def map(self, make_worker: Callable[[], Callable[[T], R]], tasks: Sequence[T]) -> Iterator[R]:
        """Each task's result as it finishes (any order); a worker's UserError is raised here unchanged."""
        ...

    def describe(self) -> dict:
        """What ran the build, for index.json's provenance."""
        ...


class LocalDistributor:
    """Every task in this process, in order, with one worker: the sharded path without a cluster."""

    def __init__(self, workers: int = 1):
        self.workers = int(workers)

    def __enter__(self) -> "LocalDistributor":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def map(self, make_worker, tasks):
        worker = make_worker()
        for task in tasks:
            yield worker(task)

    def describe(self) -> dict:
        return {"engine": "local", "workers": self.workers}


class _WorkerHost:
    """A Ray actor process that holds one worker at a time, kept for every map of a build (a process start costs seconds).

    The worker is built on its first task, so that its errors come back as that task's error.
    """

    def __init__(self, threads: int):
        import faiss
        import torch

        torch.set_num_threads(threads)  # one core per worker: N workers use N cores, not N × all
        faiss.omp_set_num_threads(threads)
        self.make_worker = None
        self.worker = None

    def use(self, make_worker) -> None:
        self.make_worker, self.worker = make_worker, None

    def run(self, task):
        if self.worker is None:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # e.g. "stage 2 not trained": the driver said it once
                self.worker = self.make_worker()
        return self.worker(task)


class RayDistributor:
    """Tasks on `workers` Ray actors of one CPU each: a local cluster started on first use, or `address`'s.

    A local cluster (no `address`, no RAY_ADDRESS) has exactly `workers` CPUs, listens on 127.0.0.1
    only and is shut down on exit; a joined cluster is left running. Workers read the model, the
    gallery and the feature cache by path, so on several nodes those must sit on a shared filesystem.
    """

    def __init__(self, workers: int, address: str | None = None, threads_per_worker: int = 1):
        if workers < 1:
            raise UserError(f"--workers must be ≥ 1, got {workers}")
        self.workers = int(workers)
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.threads_per_worker = int(threads_per_worker)
        self._ray = None
        self._initialized = False  # this distributor called ray.init (and so calls ray.shutdown)
        self._hosts: list = []

    def __enter__(self) -> "RayDistributor":
        return self

    def __exit__(self, *exc) -> None:
        if self._ray is not None:
            for host in self._hosts:
                self._ray.kill(host)
        if self._initialized:
            self._ray.shutdown()  # stops a local cluster; only disconnects from a joined one
        self._ray, self._initialized, self._hosts = None, False, []

    def describe(self) -> dict:
        return {"engine": "ray", "workers": self.workers, **({"address": self.address} if self.address else {})}

    def start(self) -> None:
        """Start (or join) the cluster now; map does it on first use, so a fully cached build never starts it."""
        self.connect()

    def connect(self):
        """Start or join the cluster (once) and return the ray module."""
        if self._ray is not None:
            return self._ray
        for name, value in (RAY_ENVIRONMENT if self.address else LOCAL_RAY_ENVIRONMENT).items():
            os.environ.setdefault(name, value)
        try:
            import ray
        except ImportError:
            raise UserError(f"--engine ray needs Ray, which is not installed: {INSTALL_HINT}") from None
        if not ray.is_initialized():
            if self.address:
                check_reachable(self.address)
            quiet = dict(log_to_driver=False, logging_level=logging.ERROR)
            try:
                if self.address:
                    ray.init(address=self.address, **quiet)
                else:
                    ray.init(address="local", num_cpus=self.workers, include_dashboard=False, _node_ip_address="127.0.0.1", **quiet)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"--address {self.address}" if self.address else "a local Ray cluster"
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise UserError(f"{where}: Ray did not start ({first[:200]})") from None
            self._initialized = True
        self._ray = ray
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus < self.workers:
            raise UserError(f"--workers {self.workers}: the Ray cluster has {cpus} CPUs; give at most --workers {cpus}")
        return ray

    def map(self, make_worker, tasks):
        tasks = list(tasks)
        if not tasks:
            return
        ray = self.connect()
        from ray.exceptions import RayTaskError
        from ray.util import ActorPool

        if not self._hosts:
            host = ray.remote(num_cpus=1)(_WorkerHost)
            self._hosts = [host.remote(self.threads_per_worker) for _ in range(self.workers)]
        hosts = self._hosts[: len(tasks)]
        for host in hosts:
            host.use.remote(make_worker)  # an actor runs one caller's calls in order: before its tasks
        try:
            yield from ActorPool(hosts).map_unordered(lambda host, task: host.run.remote(task), tasks)
        except RayTaskError as exc:
            if isinstance(exc.cause, UserError):
                raise exc.cause from None  # one line for the user, not a remote traceback
            raise


def check_reachable(address: str) -> None:
    """Refuse a HOST:PORT cluster address nothing answers at ("auto" and "local" are Ray's to resolve)."""
    if address in ("auto", "local"):
        return
    host, _, port = address.split("://")[-1].rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address}: not HOST:PORT (e.g. 10.0.0.5:6379) nor auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as exc:
        raise UserError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc})") from None


def open_distributor(engine: str, workers: int, address: str | None = None) -> LocalDistributor | RayDistributor | None:
    """The distributor for `--engine`/`--workers`/`--address`; None for one process (the plain build).

    --workers 1 is the single-process build whatever the engine; the local engine has no other
    processes, so it takes only --workers 1.
    """
    if engine not in ENGINES:
        raise UserError(f"unknown engine '{engine}' (valid: {', '.join(ENGINES)})")
    if workers < 1:
        raise UserError(f"--workers must be ≥ 1, got {workers}")
    if engine == "local":
        if workers > 1:
            raise UserError(f"--workers {workers} needs --engine ray: the local engine builds in this one process")
        if address:
            raise UserError("--address joins a Ray cluster: it goes with --engine ray")
        return None
    return None if workers == 1 else RayDistributor(workers, address)
