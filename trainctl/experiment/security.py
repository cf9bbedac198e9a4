"""Who may talk to the dask cluster an experiment runs on.

A dask scheduler runs whatever task a connected client submits, so a scheduler address
anyone can reach without authentication is shell access for them, as the workers' user.

- LocalCluster (the default): scheduler and workers listen on 127.0.0.1 over TLS with a
  certificate made for this run (`Security.temporary()`, in memory only, mutual TLS
  required), so another local user cannot submit tasks; and no HTTP server is left
  listening (no dashboard, which would also give away the address) unless `--dashboard`.
- `--scheduler ADDR`: TLS with `--tls-ca/--tls-cert/--tls-key`, or dask's own security
  config (`distributed.comm.tls.*`, `DASK_DISTRIBUTED__COMM__TLS__...`). A plain `tcp://`
  address without either is used, with a warning that it is unauthenticated.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainctl.errors import TrainctlError


class ClusterSecurityWarning(UserWarning):
    """An experiment runs on a scheduler anyone who can reach it may use."""


@dataclass
class ClusterSecurity:
    dashboard: bool = False  # --dashboard: serve the dashboard on 127.0.0.1 (bokeh needed for its pages)
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def __post_init__(self) -> None:
        given = [p for p in (self.tls_ca, self.tls_cert, self.tls_key) if p is not None]
        if given and len(given) != 3:
            raise TrainctlError("--tls-ca, --tls-cert and --tls-key go together (the CA that signed the "
                                "scheduler's certificate, and this client's certificate and key)")
        for name, path in (("--tls-ca", self.tls_ca), ("--tls-cert", self.tls_cert), ("--tls-key", self.tls_key)):
            if path is not None and not Path(path).is_file():
                raise TrainctlError(f"{name} {path}: no such file")

    # -- a LocalCluster of our own ----------------------------------------------------------
    def local_settings(self) -> dict[str, Any]:
        """dask config for the local cluster: no HTTP routes unless the dashboard is wanted;
        each worker closes its own HTTP server as it starts (`dask_setup` below)."""
        preload = {"distributed.worker.preload": [__name__]}
        if self.dashboard:
            return preload
        return {**preload, "distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}

    def local_cluster_options(self) -> dict[str, Any]:
        try:
            from distributed.security import Security

            security = Security.temporary()  # a fresh self-signed pair for this run, never on disk
        except ImportError:
            raise TrainctlError("the local dask cluster needs the 'cryptography' package for its per-run TLS "
                                "certificate: pip install cryptography") from None
        options = {"security": security, "protocol": "tls://", "host": "127.0.0.1"}
        if self.dashboard:
            return {**options, "dashboard_address": "127.0.0.1:8787"}
        # dask's scheduler opens its HTTP server even without a dashboard: on a random
        # loopback port here (not 8787), closed by `after_start`
        return {**options, "dashboard_address": None,
                "scheduler_kwargs": {"dashboard": False, "dashboard_address": "127.0.0.1:0"}}

    def after_start(self, cluster: Any) -> None:
        """dask starts an HTTP server on the scheduler even without a dashboard (on 8787, or
        a random port when that is taken): close it, so nothing but the TLS port listens."""
        if self.dashboard:
            return
        server = getattr(cluster.scheduler, "http_server", None)
        if server is not None:
            server.stop()

    # -- someone else's scheduler -------------------------------------------------------------
    def client_security(self, address: str) -> Any:
        from distributed.security import Security

        if self.tls_ca is not None:
            return Security(tls_ca_file=str(self.tls_ca), tls_client_cert=str(self.tls_cert),
                            tls_client_key=str(self.tls_key), require_encryption=True)
        security = Security()  # dask's config: distributed.comm.tls.*
        if not address.startswith("tls://") and not security.require_encryption:
            warnings.warn(f"--scheduler {address} is not TLS: anyone who can reach it can run code on its "
                          "workers (give --tls-ca/--tls-cert/--tls-key and a tls:// address)",
                          ClusterSecurityWarning, stacklevel=2)
        return security


def dask_setup(worker: Any) -> None:
    """A local cluster worker's preload: dask starts an HTTP server (metrics, health) on every
    worker, dashboard or not; close it, so the worker listens on its TLS port only."""
    server = getattr(worker, "http_server", None)
    if server is not None:
        server.stop()
