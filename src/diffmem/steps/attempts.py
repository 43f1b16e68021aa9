"""A job's attempts: a walltime pause resumes on the next one, any other failure is not retried.

Snakemake retries the ``train`` and ``sample`` rules (:func:`diffmem.plan.resources.chain_retries`) so that
a run longer than one job goes on as a chain: each attempt pauses before its walltime and the next resumes
(:class:`~diffmem.steps.train.TrainingPaused`, :class:`~diffmem.steps.sample.SamplingPaused`). A job that
fails for any other reason (a bug, a bad input, CUDA out of memory) would fail alike on every retry, so
:func:`failure_record` writes ``failed.json`` (the error, the attempt, the time) into the job's folder, and
the later attempts of the same run of the workflow stop within a second (:func:`stop_if_failed`), saying
why in the rule's log.

A pause never writes the record and a success removes it. A new run of the workflow counts its attempts
from 1 again, so it tries once more (as would deleting the record). A job killed from outside (out of host
memory, a walltime it overran) writes nothing: its next attempt resumes, with more memory and time unless
it had saved a state (then it is a link of a chain, which asks for what attempt 1 would: a pause is no failure).

The record's name is :data:`diffmem.plan.layout.FAILURE_FILE`, and :func:`diffmem.plan.resources.earlier_failure`
says whether it stops an attempt: the Plan asks a minute and :data:`~diffmem.plan.resources.STOP_MB` for such an
attempt, so that it does not wait in a cluster's queue for a full job's resources.
"""

from __future__ import annotations

import logging
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from diffmem.io import record_path, write_json
from diffmem.plan.layout import FAILURE_FILE
from diffmem.plan.resources import earlier_failure


def stop_reason(record: str | Path, attempt: int) -> str | None:
    """Why attempt ``attempt`` must not run: an earlier attempt of this run of the workflow failed (the
    record names a later or equal attempt only when a new run of the workflow began); None to go on."""
    failed = earlier_failure(record, attempt)  # none, not ours or an earlier run's: go on (and replace it)
    if failed is None:
        return None
    return (
        f"failed at attempt {failed['attempt']} ({failed.get('time', '?')}): {failed.get('error', '?')}; "
        f"not retrying (only a walltime pause is resumed). Fix the cause and run the workflow again, "
        f"or delete {record} to retry"
    )


def clear(record: str | Path) -> None:
    """Remove a failure record and its manifest entry (:func:`diffmem.io.record_path`)."""
    Path(record).unlink(missing_ok=True)
    record_path(record).unlink(missing_ok=True)


def stop_if_failed(folder: str | Path, attempt: int, log: logging.Logger) -> None:
    """First thing of a job's attempt ``attempt``: end the job at once (exit status 1, the reason logged) when
    an earlier attempt of this run of the workflow failed; else remove the record of an earlier run of the
    workflow, so none is left after a pause or a success."""
    record = Path(folder) / FAILURE_FILE
    reason = stop_reason(record, attempt)
    if reason:
        log.error("%s", reason)
        raise SystemExit(1)
    clear(record)


@contextmanager
def failure_record(folder: str | Path, attempt: int, paused: tuple[type[BaseException], ...], log: logging.Logger):
    """Run a job's work (attempt ``attempt``; :func:`stop_if_failed` before it): an error that is not one
    of the ``paused`` exceptions is recorded in ``folder/failed.json`` and re-raised."""
    try:
        yield
    except paused:
        raise
    except Exception as err:
        record = Path(folder) / FAILURE_FILE
        error = f"{type(err).__name__}: {err}"
        write_json(record, {
            "attempt": attempt, "time": time.strftime("%Y-%m-%d %H:%M:%S"), "error": error,
            "traceback": traceback.format_exc(limit=-8).splitlines(),
        })  # fmt: skip
        log.error("failed at attempt %d: %s; recorded in %s: the workflow's later attempts of this job stop "
                  "at once (only a walltime pause is retried)", attempt, error, record)  # fmt: skip
        raise
