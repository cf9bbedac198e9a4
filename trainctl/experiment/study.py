"""One machinery for every experiment: an Optuna study whose trials dask runs.

    result = run_study(experiment, directory, PlanTrials(experiment, directory), ...)

What differs between experiments is only where the next trial comes from (a `TrialSource`):

- `plan_trials.PlanTrials` (grid, random draws, seeds): the plan's variants in plan order, each a trial
  with the variant's values fixed; its run directory is the variant's run id, so the trial
  set and the names do not depend on which worker finishes first.
- `search.SearchTrials` (`search:`): the study's sampler asks; runs are `runs/trial-NNNN`.

The task a worker runs is trial_worker.py's, where the study is stored study_storage.py's.

Everything else is shared: the study in the experiment directory (Optuna's journal file, or
an RDB URL), the task that trains one trial in a worker (`train_trial`), ask-and-tell on the
client, results.csv and experiment.json after each trial, resume after a crash (a trial left
RUNNING is failed and marked interrupted; its source runs it again), and Ctrl-C (one line
that says how to resume, no dask tracebacks).
"""

from __future__ import annotations

import math
import os
import signal
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from trainctl.errors import TrainctlError
from trainctl.experiment.plan import Experiment
from trainctl.experiment.results import ExperimentResult, RunResult
from trainctl.experiment.study_storage import (  # noqa: F401  (load_study_of: the tests' and CLI's door)
    import_optuna,
    load_study_of,
    open_storage,
    pruner_of,
    storage_url_of,
)
from trainctl.experiment.trial_worker import train_trial
from trainctl.runs.files import RUNS_DIR

INTERRUPTED = "trainctl_interrupted"  # user attribute of a trial whose client died while it ran
RUN_RETRIES = 1  # a trial whose worker dies is retried this many times by dask, then failed
POLL_SECONDS = 0.5  # the client wakes this often while no trial finishes (Ctrl-C stays prompt)


# -- on the client ----------------------------------------------------------------------------


@dataclass
class Asked:
    """A trial the source wants run: its Optuna trial, its RunResult, and the worker's task
    (None when the trial cannot run: `run` holds why, and the trial is told failed)."""

    trial: Any
    run: RunResult
    task: dict[str, Any] | None


class TrialSource:
    """Where a study's trials come from. The driver asks `next` while workers are free."""

    unit = "runs"  # what the interrupt message counts
    pruner = "none"  # the pruner id the workers build

    def sampler(self, optuna):
        return optuna.samplers.RandomSampler(seed=0)  # never consulted: the plan fixes every value

    def lookahead(self, slots: int) -> int:
        """Trials submitted beyond the free workers, so a worker that finishes starts the next
        one without waiting for the client (a fixed plan loses nothing by asking early)."""
        return 0

    def resume(self, study, interrupted: list) -> list[RunResult]:
        """The runs so far (kept from earlier invocations, and those still to run)."""
        raise NotImplementedError

    def remaining(self, study) -> int:
        """How many trials are still to run (0: the client and cluster are not started)."""
        raise NotImplementedError

    def next(self, study, result: ExperimentResult, in_flight: int) -> Asked | None:
        """The next trial to submit, or None when there is none to submit now."""
        raise NotImplementedError

    def done(self, study, result: ExperimentResult) -> tuple[int, int]:
        """(done, total) for the interrupt message."""
        raise NotImplementedError


def task_for(experiment: Experiment, storage_url: str, trial, run: RunResult, config_yaml: str,
             params: dict[str, Any], pruner: str) -> dict[str, Any]:
    return {"number": trial.number, "trial_id": trial._trial_id, "study": experiment.name,
            "storage": storage_url, "out": os.fspath(run.path), "config_yaml": config_yaml,
            "source": experiment.base_source, "metric": experiment.metric, "mode": experiment.mode,
            "params": params, "pruner": pruner}


def fixed_trial(study, params: dict[str, Any], distributions: dict[str, Any], user_attrs: dict[str, Any]):
    """A RUNNING trial with these values, in one write to the storage (study.ask with an
    enqueued trial takes one write per parameter)."""
    optuna = import_optuna()
    frozen = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, params=params,
                                       distributions=distributions, user_attrs=user_attrs)
    trial_id = study._storage.create_new_trial(study._study_id, template_trial=frozen)
    return optuna.trial.Trial(study, trial_id)


def _fail_interrupted(study) -> list:
    """Trials left RUNNING by a client that died: failed and marked, so their source asks
    their values again (the study keeps every attempt)."""
    states = import_optuna().trial.TrialState
    interrupted = study.get_trials(deepcopy=False, states=(states.RUNNING,))
    for trial in interrupted:
        study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
        study._storage.set_trial_state_values(trial._trial_id, states.FAIL)
    return interrupted


def told(study, trial, value=None, state=None) -> None:
    """study.tell, tolerating GridSampler's `study.stop()` when its grid is exhausted (meant
    for study.optimize; in ask-and-tell it raises after the trial's state is stored)."""
    try:
        study.tell(trial, value, state=state, skip_if_finished=True)
    except RuntimeError as error:
        if "Study.stop" not in str(error):
            raise


@contextmanager
def _storage_write():
    """Ctrl-C waits until the study's storage write in the block is done, then interrupts. A
    KeyboardInterrupt inside optuna's journal file lock (JournalFileOpenLock.release) left the
    lock half-released and surfaced as a FileNotFoundError: a traceback instead of the
    resume message, seen in tests/test_search.py's Ctrl-C test."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if pending:
        raise KeyboardInterrupt


def _tell(study, asked: Asked, future) -> None:
    """The trial's outcome into its RunResult and the study."""
    from distributed import KilledWorker

    states = import_optuna().trial.TrialState
    run = asked.run
    try:
        outcome = future.result()
    except KilledWorker:
        told(study, asked.trial, state=states.FAIL)
        run.status = "failed"
        run.error = (f"the worker running it died ({RUN_RETRIES + 1}×: killed, or out of memory); "
                     "not retried again")
        return
    except Exception as error:
        told(study, asked.trial, state=states.FAIL)
        run.status, run.error = "failed", f"{type(error).__name__}: {error}".replace("\n", "; ")
        return
    run.status, run.error = outcome["status"], outcome.get("error")
    run.wall_seconds = outcome.get("wall_seconds")
    for key in ("final", "best", "best_epoch", "epochs", "train_seconds"):
        setattr(run, key, outcome.get(key))
    if run.status == "pruned":
        told(study, asked.trial, state=states.PRUNED)
    elif run.status == "ok" and run.final is not None and math.isfinite(run.final):
        told(study, asked.trial, run.final)
    else:
        told(study, asked.trial, state=states.FAIL)
        if run.status == "ok":
            run.status, run.error = "failed", "the metric is not finite (the run diverged)"


def _quiet_dask() -> None:
    """Closing a client under Ctrl-C makes dask log tracebacks of its cancelled tasks; the
    user asked to stop, so say it in one line instead."""
    import logging

    for name in ("distributed", "distributed.client", "distributed.worker", "distributed.nanny",
                 "distributed.scheduler", "distributed.core", "distributed.comm", "tornado",
                 "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _slots(client) -> int:
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:  # the scheduler went away; the futures will report it
        return 1


def run_study(experiment: Experiment, directory: Path, source: TrialSource, *, workers: int,
              scheduler: str | None, open_client: Callable, progress: Callable | None,
              snapshot: Callable, record: Callable[[ExperimentResult], None]) -> ExperimentResult:
    """Run the source's trials on dask until it has none left. `record(result)` writes the
    plan and results.csv after each round of finished trials (after the workers have their
    next trials: file writes stay off the path from one trial to the next); Ctrl-C stops
    cleanly (running trials are cancelled; the next run of the command resumes)."""
    optuna = import_optuna()
    direction = "maximize" if experiment.mode == "max" else "minimize"
    study = optuna.create_study(study_name=experiment.name, storage=open_storage(storage_url_of(experiment, directory)),
                                direction=direction, sampler=source.sampler(optuna),
                                pruner=pruner_of(source.pruner, optuna), load_if_exists=True)
    (directory / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    interrupted = _fail_interrupted(study)
    result = ExperimentResult(experiment, directory, source.resume(study, interrupted), False)
    record(result)
    if source.remaining(study) <= 0:
        if progress is not None:
            progress(snapshot(result, running=0))
        return result

    client = cluster = None
    futures: dict[Any, Asked] = {}
    token = uuid.uuid4().hex[:8]
    try:
        from distributed import wait

        client, cluster = open_client(workers, scheduler)  # inside: Ctrl-C while the cluster starts is clean too
        slots = _slots(client)
        finished: list = []
        submitted_count = 0
        while True:
            for future in finished:  # tell first: the sampler's next ask knows the result
                asked = futures.pop(future)
                with _storage_write():
                    _tell(study, asked, future)
                if progress is not None:
                    progress(snapshot(result, running=min(len(futures), slots), last=asked.run))
            submitted = False
            while len(futures) < slots + source.lookahead(slots):
                with _storage_write():  # the ask and its suggestions write the journal
                    asked = source.next(study, result, len(futures))
                if asked is None:
                    break
                if asked.task is None:  # not a valid config: failed without running
                    with _storage_write():
                        told(study, asked.trial, state=optuna.trial.TrialState.FAIL)
                    continue
                submitted_count += 1  # earlier asked, earlier run: a plan runs in plan order
                future = client.submit(train_trial, asked.task, pure=False, priority=-submitted_count,
                                       key=f"trainctl-{asked.run.run_id}-{asked.trial.number}-{token}")
                futures[future] = asked
                asked.run.status = "pending"
                submitted = True
            if finished or submitted:
                record(result)
                if submitted and progress is not None:
                    progress(snapshot(result, running=min(len(futures), slots)))
            if not futures:
                break
            try:
                done, _ = wait(list(futures), timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = set()
            finished = [future for future in futures if future in done]  # submission order
            if finished:
                slots = _slots(client)  # a worker may have died or joined
    except KeyboardInterrupt:
        _quiet_dask()
        for asked in futures.values():
            asked.run.status = "pending"
        record(result)
        count, total = source.done(study, result)
        raise TrainctlError(f"interrupted: {count} of {total} {source.unit} done; run the same command "
                            "again to resume") from None
    finally:
        for future in futures:
            future.cancel()
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    return result
