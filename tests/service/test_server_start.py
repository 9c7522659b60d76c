"""The test servers' own start: a port taken between being found free and being bound is retried elsewhere."""

import socket

from tests import servers


def test_a_server_whose_port_was_taken_starts_again_on_another(tmp_path, monkeypatch, trained):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port, truly_free = taken.getsockname()[1], servers.free_port
        draws = iter([taken_port])
        monkeypatch.setattr(servers, "free_port", lambda: next(draws, None) or truly_free())
        server = servers.Server(tmp_path / "server.log", models="regression", workers="1")
        try:
            server.wait_until("/readyz")
            assert server.port != taken_port
            assert f"port {taken_port} was taken before the server bound it" in server.log()
        finally:
            server.stop()
