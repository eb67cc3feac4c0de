"""The C allocator's settings while a unit reads and matches its samples.

A unit allocates and frees arrays of hundreds of kB to tens of MB for every record and chunk. glibc serves
them from its heap once its mmap threshold has risen to their size, unless the process's environment fixed the
allocator's thresholds: Dask starts every worker with MALLOC_TRIM_THRESHOLD_=65536, which also freezes the mmap
threshold at 128 kB, so each such array is mapped afresh and its pages zeroed by the kernel on first touch (at
100,000 samples a unit then spent about four times as long in the kernel and ran 1.5-1.8x slower). In such a
process, while a unit runs, arrays up to 64 MiB come from the heap and freed memory is kept for the next
record; when the unit ends the heap is trimmed and the environment's settings are set again. A process whose
environment leaves the allocator alone is not touched: glibc's own adaptive threshold serves it well, and
setting any threshold would switch that off for the rest of the process.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from contextlib import contextmanager
from functools import cache

_M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_GLIBC_DEFAULT = 128 * 1024  # glibc's initial trim and mmap thresholds
UNIT_THRESHOLD = 64 << 20  # bytes: arrays up to this size from the heap while a unit runs
_ENV = {_M_TRIM_THRESHOLD: ("MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold"),
        _M_MMAP_THRESHOLD: ("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold")}
_lock = threading.Lock()
_running = 0  # units running in this process under the setting


@cache
def _libc():
    """glibc's entry points, or None (another C library, another system)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only
        return libc
    except (OSError, AttributeError):
        return None


@cache
def _start_environment() -> dict[str, str]:
    """The environment the process started with: what glibc read its settings from (os.environ may have been
    changed since, as a Dask LocalCluster does in the process that starts it)."""
    try:
        with open("/proc/self/environ", "rb") as fh:
            items = fh.read().split(b"\0")
    except OSError:
        return dict(os.environ)
    return dict(item.decode(errors="replace").partition("=")[::2] for item in items if item)


def fixed_by_environment(environ: dict[str, str] | None = None) -> dict[int, int]:
    """The thresholds an environment (default: the process's at start) set for glibc (mallopt parameter ->
    bytes), from its MALLOC_*_ variables or GLIBC_TUNABLES (which wins); {} when it set none."""
    environ = _start_environment() if environ is None else environ
    tunables = dict(item.partition("=")[::2] for item in environ.get("GLIBC_TUNABLES", "").split(":") if item)
    fixed = {}
    for param, (variable, tunable) in _ENV.items():
        for value in (tunables.get(tunable), environ.get(variable)):
            try:
                fixed[param] = int(value, 0)
                break
            except (TypeError, ValueError):
                continue
    return fixed


@contextmanager
def unit_allocation():
    """While a unit runs in a process whose environment fixed glibc's thresholds: large arrays from the heap.
    Units running at once (a worker's threads, nested streams) share the setting; the last to end restores."""
    global _running
    fixed = fixed_by_environment()
    libc = _libc() if fixed else None
    if libc is None:
        yield
        return
    with _lock:
        _running += 1
        if _running == 1:
            libc.mallopt(_M_MMAP_THRESHOLD, UNIT_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, UNIT_THRESHOLD)
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0:
                libc.malloc_trim(0)
                for param in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD):
                    libc.mallopt(param, fixed.get(param, _GLIBC_DEFAULT))
