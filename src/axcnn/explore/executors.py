"""Executors: where the EDA and CNN tasks of the explore loop run.

All executors share one small interface used by the coordinator::

    tid = ex.submit(kind, fn, job)      # kind: "eda" (CPU) or "cnn" (GPU if requested)
    for tid, value in ex.poll(timeout): # finished tasks; value is the task's dict
        ...
    ex.close()

Task functions never raise (see :mod:`~axcnn.explore.evaluate`); a worker that dies (killed,
out of memory) or an executor failure becomes ``{"ok": False, "error": ...}`` for its tasks,
so the coordinator records it like any failure.

* :class:`SequentialExecutor`: runs each task in this process, one at a time (``workers: 1``).
* :class:`PoolExecutor`: a process pool (``spawn``) of ``workers`` processes, each with a fair
  share of the CPU threads.
* :class:`RayExecutor`: Ray tasks with per-task resources (``cpus_per_eda``, ``cpus_per_cnn``,
  ``gpus_per_cnn``) on a local Ray (started and stopped here) or a cluster (``address``; the
  exploration folder must then be on storage that every node sees).
"""

from __future__ import annotations

import collections
import logging
import os
from typing import Any, Callable

from ..errors import BackendUnavailable
from .spec import ExecutorSettings

log = logging.getLogger("axcnn.explore")


class Executor:
    name = "executor"

    def __init__(self) -> None:
        self._next = 0

    def _id(self) -> int:
        self._next += 1
        return self._next

    @property
    def capacity(self) -> int:
        """How many tasks to keep in flight."""
        return 1

    def submit(self, kind: str, fn: Callable, job: Any) -> int:  # pragma: no cover
        raise NotImplementedError

    def poll(self, timeout: float) -> list[tuple[int, dict]]:  # pragma: no cover
        raise NotImplementedError

    def close(self, wait: bool = True) -> None:
        pass

    def describe(self) -> str:
        return self.name


class SequentialExecutor(Executor):
    name = "local (sequential)"

    def __init__(self) -> None:
        super().__init__()
        self.queue: collections.deque = collections.deque()

    def submit(self, kind, fn, job):
        tid = self._id()
        self.queue.append((tid, fn, job))
        return tid

    def poll(self, timeout):
        if not self.queue:
            return []
        tid, fn, job = self.queue.popleft()
        return [(tid, fn(job))]


def _lost(kind: str, exc: BaseException) -> dict:
    return {"ok": False, "stage": kind, "error": f"the worker was lost: {type(exc).__name__}: "
            f"{exc}".rstrip(": "), "infrastructure": True}


class PoolExecutor(Executor):
    name = "local (process pool)"

    def __init__(self, workers: int):
        super().__init__()
        self.workers = workers
        self.futures: dict = {}
        self._make()

    def _make(self):
        import concurrent.futures as cf
        import multiprocessing as mp

        from .evaluate import init_worker

        threads = max(1, (os.cpu_count() or 1) // self.workers)
        self.pool = cf.ProcessPoolExecutor(max_workers=self.workers,
                                           mp_context=mp.get_context("spawn"),
                                           initializer=init_worker, initargs=(threads,))

    @property
    def capacity(self):
        return self.workers

    def describe(self):
        return f"local process pool, {self.workers} workers"

    def submit(self, kind, fn, job):
        from concurrent.futures.process import BrokenProcessPool

        tid = self._id()
        try:
            fut = self.pool.submit(fn, job)
        except BrokenProcessPool:
            self._make()
            fut = self.pool.submit(fn, job)
        self.futures[fut] = (tid, kind)
        return tid

    def poll(self, timeout):
        import concurrent.futures as cf
        from concurrent.futures.process import BrokenProcessPool

        if not self.futures:
            return []
        done, _ = cf.wait(list(self.futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        out = []
        broken = False
        for fut in done:
            tid, kind = self.futures.pop(fut)
            try:
                out.append((tid, fut.result()))
            except BrokenProcessPool as exc:
                broken = True
                out.append((tid, _lost(kind, exc)))
            except Exception as exc:  # noqa: BLE001
                out.append((tid, _lost(kind, exc)))
        if broken:
            self.pool.shutdown(wait=False, cancel_futures=True)
            for fut, (tid, kind) in list(self.futures.items()):
                out.append((tid, _lost(kind, RuntimeError("the process pool broke"))))
            self.futures.clear()
            self._make()
        return out

    def close(self, wait: bool = True):
        self.pool.shutdown(wait=wait, cancel_futures=True)


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, settings: ExecutorSettings):
        super().__init__()
        try:
            import ray
        except ImportError:
            raise BackendUnavailable("the Ray executor needs Ray: pip install 'axcnn[ray]' (or "
                                     "pip install ray), or use executor kind local") from None
        self.ray = ray
        self.settings = settings
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if settings.address:
                kwargs["address"] = settings.address
            else:
                kwargs["num_cpus"] = max(settings.workers, int(max(settings.cpus_per_eda,
                                                                   settings.cpus_per_cnn)))
                kwargs["num_gpus"] = _local_gpus()
            try:
                ray.init(**kwargs)
            except Exception as exc:  # noqa: BLE001
                raise BackendUnavailable(f"cannot start or reach Ray "
                                         f"({settings.address or 'local'}): {exc}") from None
            self._started = True
        from .evaluate import init_worker

        threads = max(1, int(settings.cpus_per_cnn))

        def run(fn, job):
            init_worker(threads)
            return fn(job)

        self._remote = ray.remote(run)
        self.refs: dict = {}
        try:
            cpus = int(ray.cluster_resources().get("CPU", settings.workers))
        except Exception:  # noqa: BLE001
            cpus = settings.workers
        # keep every CPU of the cluster busy (Ray queues what does not fit)
        self._capacity = max(settings.workers, cpus)

    @property
    def capacity(self):
        return self._capacity

    def describe(self):
        where = self.settings.address or "local Ray"
        return f"Ray ({where})"

    def submit(self, kind, fn, job):
        s = self.settings
        opts = ({"num_cpus": s.cpus_per_cnn, "num_gpus": s.gpus_per_cnn} if kind == "cnn"
                else {"num_cpus": s.cpus_per_eda})
        ref = self._remote.options(**opts).remote(fn, job)
        tid = self._id()
        self.refs[ref] = (tid, kind)
        return tid

    def poll(self, timeout):
        if not self.refs:
            return []
        ready, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            tid, kind = self.refs.pop(ref)
            try:
                out.append((tid, self.ray.get(ref)))
            except Exception as exc:  # noqa: BLE001 - a worker crash, an OOM kill, ...
                out.append((tid, _lost(kind, exc)))
        return out

    def close(self, wait: bool = True):
        for ref in list(self.refs):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001
                pass
        self.refs.clear()
        if self._started:
            self.ray.shutdown()


def _local_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001
        return 0


def make_executor(settings: ExecutorSettings) -> Executor:
    if settings.kind == "ray":
        return RayExecutor(settings)
    if settings.workers <= 1:
        return SequentialExecutor()
    return PoolExecutor(settings.workers)
