"""The readiness probe (`synesthesia.healthcheck`): it never holds a port a service is about to bind."""

from __future__ import annotations

import socket

from synesthesia import healthcheck
from tests.servers import free_port


def test_listening_tells_a_listener_from_a_free_port_and_skips_name_schemes():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        target = f"127.0.0.1:{server.getsockname()[1]}"
        assert healthcheck.listening(target) is True
    assert healthcheck.listening(target) is False
    assert healthcheck.listening(f"[::1]:{free_port()}") is False
    assert healthcheck.listening("dns:///captioning:50051") is None
    assert healthcheck.listening("unix:/tmp/syn.sock") is None


def test_a_probe_of_a_port_nobody_listens_on_answers_at_once_and_leaves_it_free():
    port = free_port()
    for _ in range(50):
        assert healthcheck.status(f"127.0.0.1:{port}") == "UNREACHABLE (UNAVAILABLE: nothing listens there)"
    with socket.socket() as server:  # the service can still bind it
        server.bind(("127.0.0.1", port))


def test_a_connection_to_itself_counts_as_nothing_listening(monkeypatch):
    """What the kernel may hand a probe of a port in its ephemeral range before the service binds it: a TCP
    self-connection (made here on purpose by binding the probe's own end to the port it connects to)."""
    port = free_port()
    own = socket.socket()
    own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    own.bind(("127.0.0.1", port))
    own.connect(("127.0.0.1", port))
    assert own.getsockname() == own.getpeername()
    monkeypatch.setattr(healthcheck.socket, "create_connection", lambda address, timeout: own)
    assert healthcheck.listening(f"127.0.0.1:{port}") is False
    assert own.fileno() == -1  # let go at once
