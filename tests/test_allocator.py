"""glibc's thresholds while a unit runs (engine/allocator.py): Dask starts workers with MALLOC_TRIM_THRESHOLD_,
which makes every large array a fresh mapping; a unit then takes them from the heap and gives the settings
back when it ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from permed.engine.allocator import _libc, fixed_by_environment

# whether a 16 MiB array gets a mapping of its own (glibc's count of mapped bytes grows by its size) or comes
# from the heap: before, inside a unit, inside it after a nested unit ended, after the unit; then with two
# overlapping units, after the first ended and after both
_PROBE = r"""
import ctypes, json
import numpy as np
from permed.engine.allocator import unit_allocation

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = Mallinfo2

def mapped():
    a = np.ones(1 << 21)  # once first, so that the adaptive threshold (when there is one) has seen the size
    del a
    before = mallinfo2().hblkhd
    a = np.ones(1 << 21)
    return mallinfo2().hblkhd - before >= a.nbytes

out = {"before": mapped()}
with unit_allocation():
    out["unit"] = mapped()
    with unit_allocation():
        pass
    out["after_nested"] = mapped()
out["after"] = mapped()
first, second = unit_allocation(), unit_allocation()  # two units overlapping (a worker's threads)
first.__enter__()
second.__enter__()
first.__exit__(None, None, None)
out["second_running"] = mapped()
second.__exit__(None, None, None)
out["both_ended"] = mapped()
print(json.dumps(out))
"""

glibc_only = pytest.mark.skipif(_libc() is None, reason="glibc's mallopt (Linux with glibc) only")


def _probe(**env) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    r = subprocess.run([sys.executable, "-c", _PROBE], env={**base, **env}, capture_output=True, text=True,
                       check=True)
    return json.loads(r.stdout)


@glibc_only
@pytest.mark.parametrize("env", [{"MALLOC_TRIM_THRESHOLD_": "65536"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=65536"}])
def test_a_unit_takes_large_arrays_from_the_heap_where_the_environment_fixed_the_thresholds(env):
    got = _probe(**env)
    # the environment's setting before and after the unit; the heap inside it, also after a nested unit ended
    # and while a unit that started later still runs
    assert got == {"before": True, "unit": False, "after_nested": False, "after": True,
                   "second_running": False, "both_ended": True}


@glibc_only
def test_a_process_whose_environment_left_the_allocator_alone_is_not_touched():
    got = _probe()
    # glibc's adaptive threshold serves the array from the heap throughout; setting any threshold (as a
    # restore to glibc's initial values would) switches it off for good
    assert not any(got.values()), got


def test_thresholds_fixed_by_the_environment():
    assert fixed_by_environment({"PATH": "/usr/bin"}) == {}
    assert fixed_by_environment({"MALLOC_TRIM_THRESHOLD_": "65536"}) == {-1: 65536}
    assert fixed_by_environment({"MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_MMAP_THRESHOLD_": "not a number"}
                                ) == {-1: 65536}
    # the tunable wins over the variable, as in glibc
    assert fixed_by_environment({
        "MALLOC_TRIM_THRESHOLD_": "65536",
        "GLIBC_TUNABLES": "glibc.malloc.check=0:glibc.malloc.mmap_threshold=262144:glibc.malloc.trim_threshold=0x20000",
    }) == {-1: 0x20000, -3: 262144}


def test_the_environment_read_is_the_one_the_process_started_with():
    """glibc read its settings when the process started: a variable set later (a LocalCluster sets Dask's in
    the process that starts it) changes nothing there, so permed does not act on it either."""
    code = ("import os; os.environ['MALLOC_TRIM_THRESHOLD_'] = '65536'; "
            "from permed.engine.allocator import fixed_by_environment as f; print(f())")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "{}"
    r = subprocess.run([sys.executable, "-c", code], env={**env, "MALLOC_MMAP_THRESHOLD_": "262144"},
                       capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "{-3: 262144}"
