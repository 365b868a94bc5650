"""The demo refuses to start on ports already taken (an earlier demo still running would
answer in place of this one's servers) and stops its servers on SIGTERM as on Ctrl-C."""

from __future__ import annotations

import signal
import socket

import pytest

from gateway.demo_stack import _check_free, _stop_on_sigterm


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
