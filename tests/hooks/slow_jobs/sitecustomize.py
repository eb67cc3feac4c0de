"""Test hook, injected into worker processes through PYTHONPATH (never part of permed itself): every
job first waits PERMED_TEST_JOB_DELAY seconds, a window in which a test can kill the worker mid-job. With
PERMED_TEST_JOB_STARTED (a folder) the job's process first leaves a file named by its pid there: the job has
started, not merely been claimed (a stop between the two is deliberately not an interruption)."""

import os

_delay = float(os.environ.get("PERMED_TEST_JOB_DELAY", "0") or 0)
if _delay:
    import time

    import permed.service.worker as _worker

    _run_job = _worker.run_job

    def _slow_run_job(*args, **kwargs):
        started = os.environ.get("PERMED_TEST_JOB_STARTED")
        if started:
            open(os.path.join(started, str(os.getpid())), "w").close()
        time.sleep(_delay)
        return _run_job(*args, **kwargs)

    _worker.run_job = _slow_run_job
