"""Sharing one machine between worker processes: how many fit its cores and memory, and each one pinned
to its share of the cores (``kr book`` executes pages side by side, ``kr sweep --workers N`` runs side by side).

A worker is a process of a :class:`concurrent.futures.ProcessPoolExecutor` (``spawn``: no forked torch or
tqdm threads) started with :func:`worker_pool`; its initializer takes one share of the CPUs this process
may use (``os.sched_getaffinity``), pins itself to it where the platform allows, and sets
``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` so that the Jupyter kernels it starts (they inherit both) run torch
with that many threads -- two kernels with all the threads each would oversubscribe the cores.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def available_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask; every CPU where the platform has none)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def memory_available_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` (what can be used without swapping); None where unknown."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def default_workers(tasks: int, memory_per_task: int) -> int:
    """As many workers as there are tasks, cores, and ``memory_per_task`` bytes of available memory, at least 1."""
    memory = memory_available_bytes()
    by_memory = memory // memory_per_task if memory is not None else tasks
    return max(1, min(tasks, len(available_cpus()), by_memory))


def cpu_shares(workers: int, threads: int) -> list[list[int] | None]:
    """For each of ``workers``, the CPUs it is pinned to: consecutive blocks of ``threads`` CPUs when
    ``workers * threads`` fit the available ones, else None for every worker (not pinned: they share)."""
    cpus = available_cpus()
    if workers * threads > len(cpus) or not hasattr(os, "sched_setaffinity"):
        return [None] * workers
    return [cpus[i * threads:(i + 1) * threads] for i in range(workers)]


# Ctrl-C reaches every process of the terminal's process group, the workers too. A worker that is running a
# task gets the KeyboardInterrupt there (the task cleans up, the parent reports it); one waiting for work must
# not: multiprocessing would print the KeyboardInterrupt traceback of its wait, and its death would break the
# pool, whose manager then terminates the other workers in the middle of their cleanup. After a Ctrl-C a
# worker starts no task (the parent is stopping the pool; tasks already queued to it return at once).
_busy = False
_stopping = False


def _on_interrupt(signum, frame) -> None:
    global _stopping
    _stopping = True
    if _busy:
        raise KeyboardInterrupt


def _as_task(fn, *args, **kwargs):
    """Run one submitted task in a worker, marked busy (so that Ctrl-C interrupts it), unless a Ctrl-C came."""
    global _busy
    if _stopping:
        raise KeyboardInterrupt
    _busy = True
    try:
        return fn(*args, **kwargs)
    finally:
        _busy = False


def _pin_worker(shares, threads: int) -> None:
    """Pool initializer: take one share (a queue of them: one per worker), pin to it, set the thread count,
    and handle Ctrl-C as above."""
    cpus = shares.get()
    if cpus:
        os.sched_setaffinity(0, cpus)
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)  # for the kernels it starts: the worker itself only waits on them
    signal.signal(signal.SIGINT, _on_interrupt)


class _WorkerPool(ProcessPoolExecutor):
    """A process pool whose tasks run through :func:`_as_task` (Ctrl-C interrupts a running task only)."""

    def submit(self, fn, /, *args, **kwargs):
        return super().submit(_as_task, fn, *args, **kwargs)


def worker_pool(workers: int, threads: int) -> ProcessPoolExecutor:
    """``workers`` spawned processes, each pinned to ``threads`` CPUs of its own (:func:`cpu_shares`). On
    Ctrl-C a worker's running task gets the ``KeyboardInterrupt``; an idle worker prints nothing and starts
    no further task, so the pool shuts down without a traceback and without killing a task mid-cleanup."""
    ctx = multiprocessing.get_context("spawn")
    shares = ctx.Queue()
    for share in cpu_shares(workers, threads):
        shares.put(share)
    return _WorkerPool(workers, mp_context=ctx, initializer=_pin_worker, initargs=(shares, threads))
