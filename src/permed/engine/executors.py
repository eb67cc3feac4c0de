"""Where units run: in this process, on local worker processes, or on a Dask cluster.

An executor takes (units, kb, options, progress) and yields UnitResults in unit order, so the
assembled output cannot depend on where or in which order units ran. A streamed cohort run instead
takes each unit's chunks as they are made: `LocalStreams` (local processes) or, on a cluster,
`DaskExecutor.session().streams(...)`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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


def _run_portable(unit: Unit, kb: KnowledgeBase | PackagedKB, options: Options) -> UnitResult:
    return run_unit(unit, _task_kb(kb), options).portable()


@dataclass(frozen=True)
class PackagedKB:
    """Stands in a Dask task for the knowledge base packaged with permed: each worker loads its own copy once
    (and keeps it between runs) instead of receiving the 1.7 MB pickle from the client on every run (0.1-0.3 s
    of a run's wall). Carries what the worker checks: the same KB and the same permed as the client's."""

    sha256: str
    permed_version: str


def _task_kb(kb: KnowledgeBase | PackagedKB) -> KnowledgeBase:
    """The knowledge base a Dask task runs with: the worker's packaged one when the client sent a reference,
    refused when the worker's permed differs from the client's (its calls could differ)."""
    if not isinstance(kb, PackagedKB):
        return kb
    from permed import __version__
    from permed.kb.load import packaged_kb

    mine = packaged_kb()
    if mine.sha256 != kb.sha256 or __version__ != kb.permed_version:
        raise ConfigurationError(
            f"Dask worker has permed {__version__} (knowledge base {str(mine.sha256)[:12]}), the client has permed "
            f"{kb.permed_version} (knowledge base {kb.sha256[:12]}): install the same permed on the workers")
    return mine


def _kb_for_tasks(client, kb: KnowledgeBase):
    """What Dask tasks get for the KB: a reference to the packaged one, or else the KB sent once per worker."""
    from permed import __version__
    from permed.errors import KnowledgeBaseError
    from permed.kb.load import packaged_kb

    try:
        if kb.sha256 is not None and kb.sha256 == packaged_kb().sha256:
            return PackagedKB(kb.sha256, __version__)
    except KnowledgeBaseError:  # a build without its packaged KB
        pass
    [kb_future] = client.scatter([kb], broadcast=True, hash=False)
    return kb_future


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


class _Streams:
    """Units whose workers send each chunk's result as soon as it is made, so the caller can assemble and write
    early blocks while the workers read later ones (`stream(i)`: unit i's one-chunk results, in order). A
    worker's error is raised where a stream waits. Use as a context manager."""

    POLL = 0.2  # seconds between checks for a failed worker while waiting

    def __init__(self, n_units: int):
        self.buffers: list[deque] = [deque() for _ in range(n_units)]

    def __enter__(self):
        return self

    def _get(self) -> tuple[int, UnitResult | None] | None:
        """The next (unit, chunk result or None at the unit's end) sent by any worker; None after POLL seconds."""
        raise NotImplementedError

    def _failure(self) -> BaseException | None:
        raise NotImplementedError

    def stream(self, i: int) -> Iterator[UnitResult]:
        while True:
            while not self.buffers[i]:
                got = self._get()
                if got is None:
                    failure = self._failure()
                    if failure is not None:
                        raise failure from None
                    continue
                self.buffers[got[0]].append(got[1])
            r = self.buffers[i].popleft()
            if r is None:
                return
            yield r


class LocalStreams(_Streams):
    """Streamed units on local worker processes (a multiprocessing queue carries the chunks)."""

    def __init__(self, units: list[Unit], kb: KnowledgeBase, options: Options):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        super().__init__(len(units))
        self.queue = multiprocessing.get_context().Queue()
        self.pool = ProcessPoolExecutor(max_workers=options.workers, initializer=_init_stream_worker,
                                        initargs=(kb, options, self.queue))
        # submitted in unit order: the workers take the units the caller needs first
        self.futures = [self.pool.submit(_stream_in_worker, i, u) for i, u in enumerate(units)]

    def __exit__(self, *exc) -> None:
        for f in self.futures:
            f.cancel()
        self.pool.shutdown(wait=True)
        self.queue.close()

    def _get(self):
        import queue as queue_module

        try:
            return self.queue.get(timeout=self.POLL)
        except queue_module.Empty:
            return None

    def _failure(self):
        return next((f.exception() for f in self.futures if f.done() and f.exception() is not None), None)


DASK_CONNECT_TIMEOUT = 30.0  # seconds


def _stream_to_dask_queue(i: int, unit: Unit, kb: KnowledgeBase | PackagedKB, options: Options,
                          queue_name: str) -> None:
    """A Dask task: unit i's chunk results, pickled and numbered, into the run's queue as they are made (each
    ~1 MB: the scheduler relays them), then the unit's end. Dask runs a task again when its worker dies: the
    numbers let the client drop the chunks it already has."""
    import pickle

    from distributed import Queue, get_client

    queue = Queue(queue_name, client=get_client())
    kb = _task_kb(kb)
    k = 0
    for k, r in enumerate(iter_unit(unit, kb, options)):
        queue.put(pickle.dumps((i, k, r.portable()), protocol=pickle.HIGHEST_PROTOCOL))
    queue.put(pickle.dumps((i, k + 1, None)))


class DaskStreams(_Streams):
    """Streamed units on a Dask cluster: each unit is one task that sends its chunks through a Dask queue."""

    # seconds between looks at an empty queue: short just after a chunk came (the next is often close behind),
    # doubling while it stays empty (each look is a round trip to the scheduler)
    WAIT_FIRST, WAIT_MAX = 0.005, 0.05

    def __init__(self, client, units: list[Unit], kb: KnowledgeBase, options: Options):
        from uuid import uuid4

        from distributed import Queue

        super().__init__(len(units))
        name = f"permed-stream-{uuid4().hex}"
        self.queue = Queue(name, client=client)
        task_kb = _kb_for_tasks(client, kb)
        self.futures = [client.submit(_stream_to_dask_queue, i, u, task_kb, options, name, pure=False,
                                      key=f"permed-stream-{i}-{name}") for i, u in enumerate(units)]
        self.received = [0] * len(units)  # chunks (and end) taken from each unit so far
        self.wait = self.WAIT_FIRST

    def __exit__(self, *exc) -> None:
        for f in self.futures:
            f.cancel()
        self.queue.close()

    def _get(self):
        import pickle
        import time

        # asked for its size first: a get that times out is logged as an error by the scheduler
        if not self.queue.qsize():
            time.sleep(self.wait)
            self.wait = min(2 * self.wait, self.WAIT_MAX)
            return None
        self.wait = self.WAIT_FIRST
        i, k, r = pickle.loads(self.queue.get())
        if k < self.received[i]:
            return None  # sent again by a rerun of the unit (its worker died): already taken
        self.received[i] = k + 1
        return i, r

    def _failure(self):
        return next((f.exception() for f in self.futures if f.status == "error"), None)


class DaskSession:
    """A connection to a Dask scheduler for one streamed run."""

    def __init__(self, client):
        self.client = client

    @property
    def slots(self) -> int:
        """Tasks the cluster runs at once (its workers' threads)."""
        return max(1, sum(self.client.nthreads().values()))

    def streams(self, units: list[Unit], kb: KnowledgeBase, options: Options) -> DaskStreams:
        return DaskStreams(self.client, units, kb, options)


class DaskExecutor:
    """Units on the Dask distributed scheduler at `address` (workers need permed installed and read access to
    the input paths). Called as an executor, it yields each unit's whole result in unit order; `session()`
    gives a streamed run (`Engine.stream`) a connection whose units send chunks as they make them."""

    def __init__(self, address: str, timeout: float = DASK_CONNECT_TIMEOUT):
        self.address, self.timeout = address, timeout

    def _connect(self):
        from distributed import Client

        try:
            return Client(self.address, timeout=self.timeout)
        except (OSError, TimeoutError) as exc:
            raise ConfigurationError(f"--scheduler {self.address}: cannot connect to a Dask scheduler ({exc})"
                                     ) from None

    @contextmanager
    def session(self) -> Iterator[DaskSession]:
        client = self._connect()
        try:
            yield DaskSession(client)
        finally:
            client.close()

    def __call__(self, units: list[Unit], kb: KnowledgeBase, options: Options, progress=None):
        from distributed import as_completed

        with self.session() as session:
            client = session.client
            task_kb = _kb_for_tasks(client, kb)
            futures = [client.submit(_run_portable, u, task_kb, options, pure=False,
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


def dask_executor(address: str, timeout: float = DASK_CONNECT_TIMEOUT) -> DaskExecutor:
    return DaskExecutor(address, timeout)
