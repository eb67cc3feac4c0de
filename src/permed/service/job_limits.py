"""Limits on one service job, so a hostile or careless upload (a decompression bomb, a header naming a
million samples, a file that makes the engine run for hours) fails its own job with one line instead of
holding a worker. Every limit has a flag of `permed serve` / `permed worker` and a default here.

A job that hits a limit is `failed` with a message naming the limit and its flag, and is not retried:
the same file would hit it again.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from permed.errors import UserError

MIB = 1024**2


@dataclass(frozen=True)
class JobLimits:
    # an uncompressed whole-genome VCF is 1-2 GiB; a bomb inflates a thousandfold (counting runs at
    # about 200 MB/s, so a bomb at this limit holds a job for under a minute)
    inflated_mb: int = 8 * 1024
    # a whole-genome VCF holds 4-6 million records
    records: int = 50_000_000
    # the service writes reports per patient; cohorts belong to `permed cohort`
    samples: int = 1000
    # address space a job may map beyond what its worker maps when it forks the job's process (a job on a
    # whole genome needs well under 1 GiB)
    memory_mb: int = 4096
    # one job's wall time (a whole-genome upload takes well under a minute)
    seconds: float = 30 * 60

    # the command-line flag that sets each limit (messages name it)
    FLAGS = {"inflated_mb": "--job-max-inflated-mb", "records": "--job-max-records",
             "samples": "--job-max-samples", "memory_mb": "--job-max-memory-mb", "seconds": "--job-max-seconds"}

    @property
    def inflated_bytes(self) -> int:
        return self.inflated_mb * MIB

    def args(self) -> list[str]:
        """The flags of `permed worker` that give a worker these limits (only those not at their default)."""
        default = JobLimits()
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value != getattr(default, f.name):
                out += [self.FLAGS[f.name], str(value)]
        return out

    # one-line reasons, each naming the limit and the flag that raises it
    def too_inflated(self) -> JobLimitExceeded:
        return JobLimitExceeded(f"the VCF inflates beyond {size(self.inflated_bytes)} "
                                f"(limit {self.FLAGS['inflated_mb']})")

    def too_many_records(self) -> JobLimitExceeded:
        return JobLimitExceeded(f"the VCF holds more than {self.records:,} records (limit {self.FLAGS['records']})")

    def too_many_samples(self) -> JobLimitExceeded:
        return JobLimitExceeded(f"the VCF names more than {self.samples:,} samples (limit {self.FLAGS['samples']})")

    def out_of_memory(self) -> JobLimitExceeded:
        return JobLimitExceeded(f"the job needs more than {size(self.memory_mb * MIB)} of memory "
                                f"(limit {self.FLAGS['memory_mb']})")

    def out_of_time(self) -> JobLimitExceeded:
        return JobLimitExceeded(f"the job ran longer than {duration(self.seconds)} (limit {self.FLAGS['seconds']})")


class JobLimitExceeded(UserError):
    """The upload or its job went beyond one of the job limits (a final failure: never retried)."""


def size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:g} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float) -> str:
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
