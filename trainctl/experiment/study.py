"""One machinery for every experiment: an Optuna study whose trials dask runs.

    result = run_study(experiment, directory, PlanTrials(experiment, directory), ...)

What differs between experiments is only where the next trial comes from (a `TrialSource`):

- `plan_trials.PlanTrials` (grid, random draws, seeds): the plan's variants in plan order, each a trial
  with the variant's values fixed; its run directory is the variant's run id, so the trial
  set and the names do not depend on which worker finishes first.
- `search.SearchTrials` (`search:`): the study's sampler asks; runs are `runs/trial-NNNN`.

Everything else is shared: the study in the experiment directory (Optuna's journal file, or
an RDB URL), the task that trains one trial in a worker (`train_trial`), ask-and-tell on the
client, results.csv and experiment.json after each trial, resume after a crash (a trial left
RUNNING is failed and marked interrupted; its source runs it again), and Ctrl-C (one line
that says how to resume, no dask tracebacks).
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from trainctl.errors import TrainctlError
from trainctl.experiment.plan import Experiment
from trainctl.experiment.results import ExperimentResult, RunResult
from trainctl.runs.files import EXPERIMENT_FILE, RUNS_DIR, STUDY_FILE, TRIAL_FILE
from trainctl.train.callbacks import Callback

INTERRUPTED = "trainctl_interrupted"  # user attribute of a trial whose client died while it ran
RUN_RETRIES = 1  # a trial whose worker dies is retried this many times by dask, then failed
POLL_SECONDS = 0.5  # the client wakes this often while no trial finishes (Ctrl-C stays prompt)


def _optuna():
    try:
        import optuna
    except ImportError:  # pragma: no cover - optuna is a dependency; a broken install still gets a line
        raise TrainctlError("experiments need optuna: pip install optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # trainctl shows its own progress
    return optuna


def pruner_of(name: str, optuna):
    """The pruner by id. Optuna does not store it with the study: the workers build it
    again from the id (load_study's default would be a median pruner)."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def storage_url_of(experiment: Experiment, directory: Path) -> str:
    """What a worker opens: an RDB URL (`search.storage`), or `journal:<path>` for the journal file."""
    spec = experiment.spec.search
    if spec is not None and spec.storage:
        return spec.storage
    return f"journal:{os.fspath(directory / STUDY_FILE)}"


_STORAGES: dict[str, Any] = {}  # per process: a journal replays only what is new since the last read


def open_storage(url: str):
    if not url.startswith("journal:"):
        return url  # an RDB URL: optuna opens it
    if url not in _STORAGES:
        optuna = _optuna()
        from optuna.storages.journal import JournalFileBackend

        _STORAGES[url] = optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:"):]))
    return _STORAGES[url]


def load_study_of(directory: Path):
    """The study of an experiment directory (its journal file), or None. The name comes from
    experiment.json, else the journal's only study (experiment.json is written just after)."""
    from trainctl.runs.atomic import read_json

    journal = directory / STUDY_FILE
    if not journal.is_file():
        return None
    optuna = _optuna()
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(os.fspath(journal)))  # a fresh read
    if (directory / EXPERIMENT_FILE).is_file():
        name = read_json(directory / EXPERIMENT_FILE)["name"]
    else:
        names = optuna.get_all_study_names(storage)
        if len(names) != 1:
            return None
        name = names[0]
    return optuna.load_study(study_name=name, storage=storage)


# -- in the worker ----------------------------------------------------------------------------


class PruneOnPlateau(Callback):
    """Reports the monitored metric to the trial after each epoch; stops training when the
    pruner says so (at the end of that epoch, like Keras's early stopping)."""

    def __init__(self, storage_url: str, study_name: str, trial_id: int, metric: str, pruner: str):
        super().__init__()
        self.storage_url, self.study_name, self.trial_id, self.metric = storage_url, study_name, trial_id, metric
        self.pruner = pruner
        self.pruned_at: int | None = None
        self._trial = None

    def on_train_begin(self, logs=None):
        optuna = _optuna()
        study = optuna.load_study(study_name=self.study_name, storage=open_storage(self.storage_url),
                                  pruner=pruner_of(self.pruner, optuna))
        self._trial = optuna.trial.Trial(study, self.trial_id)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.metric)
        if value is None or not math.isfinite(float(value)):
            return
        self._trial.report(float(value), epoch)
        if self._trial.should_prune():
            self.pruned_at = epoch
            self.model.stop_training = True


def train_trial(task: dict[str, Any]) -> dict[str, Any]:
    """One trial in a worker: train into task["out"], report per epoch when a pruner watches,
    write trial.json, return the outcome (never raises for a failed run)."""
    from trainctl.experiment.results import summarise_run_dir
    from trainctl.runs.atomic import atomic_write_json

    started, cpu = time.perf_counter(), time.thread_time()
    out = Path(task["out"])
    # started_at/ended_at (epoch seconds) and pid: when and where it ran (a worker's idle gaps)
    result: dict[str, Any] = {"number": task["number"], "status": "ok", "error": None,
                              "pid": os.getpid(), "started_at": time.time()}
    try:
        from trainctl.config import load_config_text
        from trainctl.runs.train import train_from_config

        if out.exists():  # left by an interrupted attempt (or a worker that died): start over
            shutil.rmtree(out)
        pruning = None
        if task["pruner"] != "none":
            pruning = PruneOnPlateau(task["storage"], task["study"], task["trial_id"], task["metric"], task["pruner"])
        loaded = load_config_text(task["config_yaml"], task["source"])
        train_from_config(loaded, out=out, callbacks=[pruning] if pruning is not None else [])
        result.update(summarise_run_dir(out, task["metric"], task["mode"]))
        pruned_at = pruning.pruned_at if pruning is not None else None
        if pruned_at is not None:
            result.update(status="pruned", pruned_at=pruned_at)
        atomic_write_json(out / TRIAL_FILE, {"number": task["number"], "state": result["status"],
                                             "params": task["params"], "pruned_at": pruned_at})
    except TrainctlError as error:
        result.update(status="failed", error=str(error).replace("\n", "; "))
    except Exception as error:  # a bug in one trial must not stop the others; keep its story
        result.update(status="failed", error=f"{type(error).__name__}: {error}".replace("\n", "; "))
    result["wall_seconds"] = time.perf_counter() - started
    result["cpu_seconds"] = time.thread_time() - cpu  # this task's thread, not the worker's others
    result["ended_at"] = time.time()
    return result


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
    optuna = _optuna()
    frozen = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, params=params,
                                       distributions=distributions, user_attrs=user_attrs)
    trial_id = study._storage.create_new_trial(study._study_id, template_trial=frozen)
    return optuna.trial.Trial(study, trial_id)


def _fail_interrupted(study) -> list:
    """Trials left RUNNING by a client that died: failed and marked, so their source asks
    their values again (the study keeps every attempt)."""
    states = _optuna().trial.TrialState
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

    states = _optuna().trial.TrialState
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
    optuna = _optuna()
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
