"""Issue 15, item 9: the experiment's local dask cluster talks TLS with a per-run certificate
on 127.0.0.1 and leaves no HTTP server (dashboard) listening; a client without the run's
certificate cannot submit tasks; --scheduler without TLS is used with a warning."""

from __future__ import annotations

import pytest

from tests.test_hostile.common import cli, write


def _listening_ports(pid: int) -> set[int]:
    import psutil

    return {c.laddr.port for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}


def test_the_local_cluster_is_tls_only_with_no_http_server():
    pytest.importorskip("cryptography")
    import os

    from distributed import Client

    from trainctl.experiment.runner import _open_client
    from trainctl.experiment.security import ClusterSecurity

    before = _listening_ports(os.getpid())
    client, cluster = _open_client(1, None, ClusterSecurity())
    try:
        address = cluster.scheduler_address
        assert address.startswith("tls://127.0.0.1:"), address
        port = int(address.rsplit(":", 1)[1])
        nannies = {int(w.address.rsplit(":", 1)[1]) for w in cluster.workers.values()}
        assert all(w.address.startswith("tls://127.0.0.1:") for w in cluster.workers.values())
        opened = _listening_ports(os.getpid()) - before
        # the scheduler's and the nanny's TLS ports and nothing else (no 8787, no HTTP server)
        assert opened == {port} | nannies, (opened, port, nannies)
        assert client.submit(sum, [1, 2]).result(timeout=60) == 3  # the run's own certificate works
        # another local user knows the address but not the certificate: no connection
        from distributed.security import Security

        with pytest.raises((OSError, TimeoutError)):  # their own certificate: the handshake is refused
            Client(address, security=Security.temporary(), timeout="3s")
        with pytest.raises((OSError, TimeoutError)):  # plain TCP on the same port
            Client(address.replace("tls://", "tcp://"), timeout="3s")
    finally:
        client.close()
        cluster.close()


def test_the_dashboard_only_with_dashboard_and_on_loopback():
    from trainctl.experiment.security import ClusterSecurity

    assert ClusterSecurity().local_cluster_options()["dashboard_address"] is None
    assert ClusterSecurity(dashboard=True).local_cluster_options()["dashboard_address"] == "127.0.0.1:8787"


def test_a_plain_tcp_scheduler_warns_and_tls_options_are_checked(tmp_path):
    from trainctl.experiment.security import ClusterSecurity, ClusterSecurityWarning

    with pytest.warns(ClusterSecurityWarning, match="anyone who can reach it can run code"):
        ClusterSecurity().client_security("tcp://10.0.0.5:8786")
    experiment = write(tmp_path, "exp.yaml", "base: missing.yaml\n")
    usage = cli("experiment", experiment, "--tls-ca", tmp_path / "ca.pem")
    assert usage.code == 2 and "apply to --scheduler" in usage.stderr
    partial = cli("experiment", experiment, "--scheduler", "tls://127.0.0.1:1", "--tls-ca", experiment)
    assert "--tls-ca, --tls-cert and --tls-key go together" in partial.clean_error()
