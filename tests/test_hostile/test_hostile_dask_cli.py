"""Issue 15, item 9 through the real CLI: `trainctl experiment` as a subprocess, watched from
outside while a trial runs. Every port its process tree listens on is on loopback and speaks
TLS (the scheduler's included: it lives in the experiment process), none answers HTTP — unless
`--dashboard`, which adds exactly one HTTP server, on loopback."""

from __future__ import annotations

import http.client
import os
import signal
import ssl
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.test_hostile.common import BASE, ENV, TRAINCTL, write

LONG = BASE.replace("epochs: 1", "epochs: 100000")  # still training when the test looks, then stopped
EXPERIMENT = "name: net\nbase: base.yaml\ngrid: {seed: [0]}\nmetric: val_loss\n"


def speaks_tls(port: int) -> bool:
    try:
        ssl.get_server_certificate(("127.0.0.1", port), timeout=10)
    except (OSError, ssl.SSLError):
        return False
    return True


def answers_http(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status > 0
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def listening_while_a_trial_runs(root, dashboard: bool) -> dict:
    """Start the experiment, wait until its trial has begun (its run directory has a config),
    then list every listening socket of the experiment's process tree and probe each."""
    import psutil

    out = root / "out"
    args = [*TRAINCTL, "experiment", "exp.yaml", "--workers", "1", "--out", str(out)] + (["--dashboard"] if dashboard else [])
    process = subprocess.Popen(args, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **ENV}, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not list(out.glob("runs/*/config.yaml")):
            assert process.poll() is None, process.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the trial did not start within 180 s"
            time.sleep(0.05)
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
        sockets = {(p.pid, c.laddr.ip, c.laddr.port) for p in tree for c in p.net_connections(kind="inet")
                   if c.status == psutil.CONN_LISTEN}
        ports = {port for _, _, port in sockets}
        return {"sockets": sockets, "main": {port for pid, _, port in sockets if pid == process.pid},
                "tls": {port for port in ports if speaks_tls(port)}, "http": {port for port in ports if answers_http(port)}}
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def test_experiment_listens_only_on_loopback_tls_and_serves_http_only_with_dashboard(tmp_path):
    pytest.importorskip("cryptography")
    roots = []
    for name in ("plain", "dashboard"):
        root = tmp_path / name
        root.mkdir()
        write(root, "base.yaml", LONG)
        write(root, "exp.yaml", EXPERIMENT)
        roots.append(root)
    with ThreadPoolExecutor(2) as pool:
        plain, with_dashboard = pool.map(lambda args: listening_while_a_trial_runs(*args),
                                         [(roots[0], False), (roots[1], True)])
    for seen in (plain, with_dashboard):
        assert seen["sockets"], seen
        assert {ip for _, ip, _ in seen["sockets"]} <= {"127.0.0.1", "::1"}, seen  # nothing beyond loopback
        assert seen["main"] & seen["tls"], seen  # the scheduler, in the experiment process, is tls://
    ports = {port for _, _, port in plain["sockets"]}
    assert plain["tls"] == ports and not plain["http"], plain  # every port TLS, no HTTP server
    dashboard_ports = {port for _, _, port in with_dashboard["sockets"]}
    assert len(with_dashboard["http"]) == 1 and with_dashboard["http"] <= with_dashboard["main"], with_dashboard
    assert with_dashboard["tls"] == dashboard_ports - with_dashboard["http"], with_dashboard
