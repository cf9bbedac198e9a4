"""Run in each local dask worker process as it starts (`distributed.worker.preload`).

Ctrl-C in a terminal reaches every process of the foreground group, the spawned workers
included; a worker that takes it dies printing a KeyboardInterrupt traceback while the
client is already stopping the study. Ctrl-C is the client's: it cancels the trials and
closes the workers. The imports are the training path's, once per worker before its first
trial (a worker outlives many trials).
"""

from __future__ import annotations

import signal


def dask_setup(worker=None) -> None:
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: the default handling stays
        pass
    import trainctl.config  # noqa: F401
    import trainctl.experiment.trial_worker  # noqa: F401
    import trainctl.runs.train  # noqa: F401
