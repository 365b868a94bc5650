"""The demo refuses to start on ports already taken (an earlier demo still running would
answer in place of this one's servers) and stops its servers on SIGTERM as on Ctrl-C."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from gateway import demo_stack
from gateway.demo_stack import _check_free, _stop_on_sigterm
from gateway.store import repository


def test_a_taken_port_is_refused_by_name() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit, match=f"port {port} on 127.0.0.1 is in use"):
            _check_free([port])
    _check_free([port])  # free again once released


def test_sigterm_stops_the_demo_as_ctrl_c_does() -> None:
    with pytest.raises(KeyboardInterrupt):
        _stop_on_sigterm(signal.SIGTERM, None)


class _PastTheGuard(Exception):
    """The demo went on to start (check its ports)."""


def _started(ports: list[int]) -> None:
    raise _PastTheGuard


def test_the_demo_refuses_a_production_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, factory: sessionmaker[Session]
) -> None:
    """It would mint an admin token and push made-up homes into the production database."""
    monkeypatch.setattr(demo_stack, "_check_free", _started)
    monkeypatch.setenv("GATEWAY_DATABASE_URL", database_url)
    for spelling in ("production", "Production "):
        monkeypatch.setenv("GATEWAY_ENVIRONMENT", spelling)
        with pytest.raises(SystemExit, match="GATEWAY_ENVIRONMENT=production"):
            demo_stack.run_demo(port=0, data_dir=tmp_path / "demo-data")
    with factory() as session:
        assert repository.list_tokens(session) == []
    assert not (tmp_path / "demo-data").exists()
    monkeypatch.setenv("GATEWAY_ENVIRONMENT", "development")
    with pytest.raises(_PastTheGuard):  # elsewhere the demo starts as before
        demo_stack.run_demo(port=0, data_dir=tmp_path / "demo-data")


def test_a_port_whose_last_server_just_stopped_is_free_again() -> None:
    """Connections closed by a demo that just stopped linger (TIME_WAIT) for a minute;
    they must not make the next demo refuse the port."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end waits in TIME_WAIT
        client.close()
    _check_free([port])
