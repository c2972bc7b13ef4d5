"""Where jobs run: a local process pool (default) or a Ray cluster. Both yield ``(job, result, error)``
as jobs finish, so the builder appends rows in completion order either way.

``LocalEngine(workers=0)`` runs jobs in the calling process (tests, debugging). Ray is imported only
when the Ray engine is used (``pip install 'dass-edge[ray]'``).
"""

from __future__ import annotations

import abc
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from dass_edge.errors import DassEdgeError

__all__ = ["Engine", "LocalEngine", "RayEngine", "make_engine"]

JobFn = Callable[[dict], dict]
Outcome = tuple[dict, dict | None, BaseException | None]


class Engine(abc.ABC):
    """Runs a function over jobs; subclasses implement :meth:`run`."""

    name = "engine"
    workers = 1

    @abc.abstractmethod
    def run(self, fn: JobFn, jobs: list[dict]) -> Iterator[Outcome]:
        """Yield one outcome per job, in completion order."""

    def close(self) -> None:  # noqa: B027 - a deliberate no-op default; engines with workers override it
        """Release workers (a no-op where there are none)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _die_with_parent(parent: int) -> None:
    """Pool initializer: on Linux, have the kernel end this worker when the process that spawned it dies.

    Without it, a ``kill -9`` of ``meta build-db`` leaves its workers training their students to the end for
    nobody (the parent that would append the rows is gone), and a rerun trains the same students beside them.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


class LocalEngine(Engine):
    """A pool of ``workers`` spawned processes (0: run in this process)."""

    name = "local"

    def __init__(self, workers: int = 1) -> None:
        if workers < 0:
            raise DassEdgeError(f"--workers must be >= 0, got {workers}")
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def run(self, fn: JobFn, jobs: list[dict]) -> Iterator[Outcome]:
        if self.workers == 0:
            import torch

            threads = torch.get_num_threads()  # jobs pin threads; give the caller its setting back
            for job in jobs:
                try:
                    yield job, fn(job), None
                except Exception as e:  # a failed job is reported, the others still run
                    yield job, None, e
                finally:
                    torch.set_num_threads(threads)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_die_with_parent, initargs=(os.getpid(),))
        pending: dict[Future, dict] = {}
        queue = list(jobs)
        try:
            while queue or pending:
                # Keep only a few jobs queued ahead, so a kill leaves little submitted-but-unfinished work.
                while queue and len(pending) < 2 * self.workers:
                    job = queue.pop(0)
                    pending[self._pool.submit(fn, job)] = job
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = pending.pop(fut)
                    err = fut.exception()
                    yield job, (None if err else fut.result()), err
        finally:
            for fut in pending:
                fut.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class RayEngine(Engine):
    """Ray tasks, one CPU slot per job thread. Without ``address`` a local cluster of ``workers`` slots
    is started (and stopped on close); with one, jobs go to that cluster.

    Workers must see the same teacher files and task cache (a shared file system, as on one machine).
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int = 2, threads: int = 1) -> None:
        try:
            import ray
        except ImportError:
            raise DassEdgeError("the Ray engine needs Ray: pip install 'dass-edge[ray]'") from None
        self._ray = ray
        self.workers = workers
        self.threads = threads
        kwargs: dict = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address:
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = workers * threads
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise DassEdgeError(f"cannot start or reach the Ray cluster ({str(e).splitlines()[0]})") from None

    def run(self, fn: JobFn, jobs: list[dict]) -> Iterator[Outcome]:
        ray = self._ray
        remote = ray.remote(num_cpus=self.threads, max_retries=0)(fn)
        refs = {remote.remote(job): job for job in jobs}
        try:
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                for ref in done:
                    job = refs.pop(ref)
                    try:
                        yield job, ray.get(ref), None
                    except Exception as e:  # RayTaskError wraps the job's exception
                        yield job, None, getattr(e, "cause", None) or e
        finally:
            for ref in refs:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._ray.is_initialized():
            self._ray.shutdown()


def make_engine(name: str, workers: int, address: str | None = None, threads: int = 1) -> Engine:
    if name == "local":
        if address:
            raise DassEdgeError("--address is for --engine ray")
        return LocalEngine(workers)
    if name == "ray":
        return RayEngine(address, max(1, workers), threads)
    raise DassEdgeError(f"unknown engine {name!r}; choose local or ray")
