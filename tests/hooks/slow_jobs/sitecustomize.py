"""Test hook, injected into worker processes through PYTHONPATH (never part of permed itself): every
job first waits PERMED_TEST_JOB_DELAY seconds, a window in which a test can kill the worker mid-job."""

import os

_delay = float(os.environ.get("PERMED_TEST_JOB_DELAY", "0") or 0)
if _delay:
    import time

    import permed.service.worker as _worker

    _run_job = _worker.run_job

    def _slow_run_job(*args, **kwargs):
        time.sleep(_delay)
        return _run_job(*args, **kwargs)

    _worker.run_job = _slow_run_job
