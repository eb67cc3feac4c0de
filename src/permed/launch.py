"""The `permed` command's entry point: stop signals are handled from its first moment.

A Ctrl-C or SIGTERM that arrives while the command line's libraries are still being imported raises its
exception inside an import, where it can be lost (the run then went on and wrote everything). Handlers that
also note the stop are installed here, before those imports, and staged output is committed only when no
stop was noted (`permed.errors.raise_if_stopped`). Long-running commands (`serve`, `worker`) handle their
signals themselves.
"""

from __future__ import annotations

import signal
import sys

LONG_RUNNING = ("serve", "worker")


def is_batch(args: list[str]) -> bool:
    return not set(args[:1]) & set(LONG_RUNNING)


def install_stop_handlers() -> None:
    """SIGTERM and SIGHUP unwind a command like Ctrl-C (outputs staged so far are removed), exit 143; Ctrl-C
    as Python does, exit 130 (unless the command was started with it ignored). Each stop is also noted."""
    from permed import errors

    def stop(signum, _frame):
        errors.stop_signal = signum
        raise KeyboardInterrupt if signum == signal.SIGINT else errors.Terminated(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        # SIGINT: only in place of Python's own handler (not when ignored, nor when ours is there already)
        if sig != signal.SIGINT or signal.getsignal(sig) is signal.default_int_handler:
            signal.signal(sig, stop)


def main() -> None:
    if is_batch(sys.argv[1:]):
        install_stop_handlers()
    from permed.cli import main as cli_main

    cli_main()
