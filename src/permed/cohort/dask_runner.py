"""Run the engine's units on a Dask distributed cluster (`--scheduler ADDRESS`).

A runner has the same signature as `pipeline.execute`: it yields UnitResults in unit order, so the
assembled output cannot depend on where or in which order units ran. Workers need permed installed
and read access to the input paths.
"""

from __future__ import annotations

from permed.errors import UserError
from permed.pipeline import run_unit, unit_cost


def dask_runner(address: str, timeout: float = 30):
    def run(units, kb, options, evidence=True, progress=None):
        from distributed import Client, as_completed

        try:
            client = Client(address, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise UserError(f"--scheduler {address}: cannot connect to a Dask scheduler ({exc})") from None
        try:
            # the KB travels once per worker, not once per unit
            [kb_future] = client.scatter([kb], broadcast=True, hash=False)
            futures = [client.submit(run_unit, u, kb_future, options, evidence, pure=False,
                                     priority=int(unit_cost(u) // 1024), key=f"permed-unit-{i}-{id(units)}")
                       for i, u in enumerate(units)]
            position = {f.key: i for i, f in enumerate(futures)}
            done: dict[int, object] = {}
            next_i = 0
            for fut in as_completed(futures):
                done[position[fut.key]] = fut.result()  # re-raises a worker's UserError here
                fut.release()
                if progress:
                    progress(advance=units[position[fut.key]].n_samples)
                while next_i in done:
                    yield done.pop(next_i)
                    next_i += 1
        finally:
            client.close()

    return run
