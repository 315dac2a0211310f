"""Worker processes that stop with their parent: Ctrl-C reaches the parent only, which ends them.

:func:`run_in_workers` runs calls side by side in ``spawn`` worker processes and returns their
results in order. The workers ignore ``SIGINT`` (a terminal's Ctrl-C goes to the whole process
group, and each worker would otherwise print its own ``KeyboardInterrupt`` traceback); the
parent's ``KeyboardInterrupt`` (or any error) cancels the calls not yet started and terminates the
running workers at once instead of waiting for them. Files they write atomically are left whole
(see :func:`sparsesel.outputs.remove_leftover_temporaries` for their temporary files).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["run_in_workers"]


def _ignore_interrupts() -> None:
    """Worker initializer: Ctrl-C is the parent's business.

    Also gives tqdm a thread lock: its default, a multiprocessing lock, is a named semaphore that a
    worker terminated mid-call never releases, and the resource tracker would report it as leaked
    when the parent exits (a warning after the parent's one-line message).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return
    tqdm.set_lock(threading.RLock())


def _stop(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Cancel what has not started and terminate the workers, without waiting for their calls."""
    processes = list(getattr(pool, "_processes", {}).values())  # the executor's own worker table
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()


def run_in_workers(function: Callable[..., Any], calls: Sequence[tuple], processes: int) -> list[Any]:
    """``[function(*args) for args in calls]``, computed by ``processes`` spawn worker processes.

    Parameters
    ----------
    function : callable
        A module-level (picklable) function.
    calls : sequence of tuple
        The positional arguments of each call (pickled to the workers).
    processes : int
        Worker processes (at least 1).

    Returns
    -------
    list
        The results, in the order of ``calls``. The first call that raises re-raises here, after
        the other workers were stopped.
    """
    context = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=processes, mp_context=context, initializer=_ignore_interrupts)
    try:
        # the workers are started by submit(); started while SIGINT is ignored, they inherit that from
        # their first instruction on (the initializer alone would leave their start-up exposed)
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
        try:
            futures = [pool.submit(function, *args) for args in calls]
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)
        results = [future.result() for future in futures]
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)
    return results
