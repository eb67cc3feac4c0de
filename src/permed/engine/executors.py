"""Where units run: in this process, on local worker processes, or on a Dask cluster.

An executor takes (units, kb, options, progress) and yields UnitResults in unit order, so the
assembled output cannot depend on where or in which order units ran.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from permed.engine.units import Unit, UnitResult, iter_unit, run_unit, unit_cost
from permed.errors import ConfigurationError
from permed.kb.model import KnowledgeBase
from permed.options import Options

_WORKER_STATE: dict = {}


def _init_worker(kb: KnowledgeBase, options: Options) -> None:
    import signal

    # the parent handles Ctrl-C and SIGTERM (it shuts the pool down and removes staged output); a worker
    # stopped by the pool's shutdown ends quietly
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _WORKER_STATE.update(kb=kb, options=options)


def _run_in_worker(unit: Unit) -> UnitResult:
    return run_unit(unit, _WORKER_STATE["kb"], _WORKER_STATE["options"]).portable()


def _run_portable(unit: Unit, kb: KnowledgeBase, options: Options) -> UnitResult:
    return run_unit(unit, kb, options).portable()


def local_executor(units: list[Unit], kb: KnowledgeBase, options: Options, progress=None):
    """Run units here (one worker) or on local worker processes; yield results in unit order.

    The largest units are started first so that one big file does not finish last on its own. (A streamed
    cohort run on local workers uses `LocalStreams` instead, which hands over chunks as they are made.)"""
    if options.workers > 1 and len(units) > 1:
        from concurrent.futures import ProcessPoolExecutor  # multiprocessing: imported only when used

        with ProcessPoolExecutor(max_workers=options.workers, initializer=_init_worker,
                                 initargs=(kb, options)) as pool:
            futures = {}
            for i in sorted(range(len(units)), key=lambda i: -unit_cost(units[i])):
                futures[i] = pool.submit(_run_in_worker, units[i])
                if progress:
                    futures[i].add_done_callback(lambda _f, k=units[i].n_samples: progress(advance=k))
            for i in range(len(units)):
                yield futures[i].result()
    else:
        for u in units:
            on_chunk = (lambda k: progress(advance=k)) if progress else None
            yield run_unit(u, kb, options, on_chunk)


def _init_stream_worker(kb: KnowledgeBase, options: Options, queue) -> None:
    _init_worker(kb, options)
    # a worker must be able to exit with chunks still unsent when the run stops early (a failed unit, Ctrl-C):
    # otherwise it waits for the main process to read them, and the main process waits for it to exit
    queue.cancel_join_thread()
    _WORKER_STATE["queue"] = queue


def _stream_in_worker(i: int, unit: Unit) -> None:
    queue = _WORKER_STATE["queue"]
    for r in iter_unit(unit, _WORKER_STATE["kb"], _WORKER_STATE["options"]):
        queue.put((i, r.portable()))
    queue.put((i, None))  # the unit's end, behind its chunks in the queue


class LocalStreams:
    """Units on local worker processes that send each chunk's result as soon as it is made, so the caller can
    assemble and write early blocks while the workers read later ones (`stream(i)`: unit i's one-chunk
    results, in order). A worker's error is raised where a stream waits. Use as a context manager."""

    POLL = 0.2  # seconds between checks for a failed worker while waiting

    def __init__(self, units: list[Unit], kb: KnowledgeBase, options: Options):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.queue = multiprocessing.get_context().Queue()
        self.pool = ProcessPoolExecutor(max_workers=options.workers, initializer=_init_stream_worker,
                                        initargs=(kb, options, self.queue))
        # submitted in unit order: the workers take the units the caller needs first
        self.futures = [self.pool.submit(_stream_in_worker, i, u) for i, u in enumerate(units)]
        self.buffers: list[deque] = [deque() for _ in units]

    def __enter__(self) -> LocalStreams:
        return self

    def __exit__(self, *exc) -> None:
        for f in self.futures:
            f.cancel()
        self.pool.shutdown(wait=True)
        self.queue.close()

    def stream(self, i: int) -> Iterator[UnitResult]:
        import queue as queue_module

        while True:
            while not self.buffers[i]:
                try:
                    j, r = self.queue.get(timeout=self.POLL)
                except queue_module.Empty:
                    for f in self.futures:
                        if f.done() and f.exception() is not None:
                            raise f.exception() from None
                    continue
                self.buffers[j].append(r)
            r = self.buffers[i].popleft()
            if r is None:
                return
            yield r


DASK_CONNECT_TIMEOUT = 30.0  # seconds


def dask_executor(address: str, timeout: float = DASK_CONNECT_TIMEOUT):
    """Run units on the Dask distributed scheduler at `address` (workers need permed installed and
    read access to the input paths)."""

    def run(units: list[Unit], kb: KnowledgeBase, options: Options, progress=None):
        from distributed import Client, as_completed

        try:
            client = Client(address, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ConfigurationError(f"--scheduler {address}: cannot connect to a Dask scheduler ({exc})") from None
        try:
            # the KB travels once per worker, not once per unit
            [kb_future] = client.scatter([kb], broadcast=True, hash=False)
            futures = [client.submit(_run_portable, u, kb_future, options, pure=False,
                                     priority=int(unit_cost(u) // 1024), key=f"permed-unit-{i}-{id(units)}")
                       for i, u in enumerate(units)]
            position = {f.key: i for i, f in enumerate(futures)}
            done: dict[int, UnitResult] = {}
            next_i = 0
            for fut in as_completed(futures):
                done[position[fut.key]] = fut.result()  # re-raises a worker's PermedError here
                fut.release()
                if progress:
                    progress(advance=units[position[fut.key]].n_samples)
                while next_i in done:
                    yield done.pop(next_i)
                    next_i += 1
        finally:
            client.close()

    return run
