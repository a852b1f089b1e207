"""Real sockets that fail the ways a real network does: a server that accepts and never answers, a TLS server whose
certificate nobody trusts (a proxy that intercepts TLS, as far as the client can tell), and a refused port.

    with SilentServer() as silent, UntrustedTLSServer(tmp_path) as tls:
        ... f"https://127.0.0.1:{silent.port}" ... f"https://127.0.0.1:{tls.port}" ... refused_port() ...

The certificate is made for the test by `openssl` (self-signed, for 127.0.0.1), so no key is committed.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path


def refused_port() -> int:
    """A port on 127.0.0.1 that was just free and has no listener: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SilentServer:
    """Accepts every connection, reads nothing, answers nothing, until closed."""

    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn = self._listener.accept()[0]
            except TimeoutError:
                continue
            except OSError:
                return
            self._took(conn)

    def _took(self, conn: socket.socket) -> None:
        """What happens to an accepted connection: here, held open in silence."""
        self._held.append(conn)

    @property
    def accepted(self) -> int:
        return len(self._held)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in [*self._held, self._listener]:
            conn.close()


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1, signed by nobody any client trusts."""
    openssl = shutil.which("openssl")
    assert openssl, "the network-fault tests make their certificate with the openssl command"
    cert, key = folder / "untrusted.pem", folder / "untrusted.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


class UntrustedTLSServer(SilentServer):
    """Completes TLS handshakes with a self-signed certificate (offering h2 and http/1.1), then says nothing."""

    def __init__(self, folder: Path):
        self.cert, key = self_signed_certificate(folder)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(self.cert, key)
        self._context.set_alpn_protocols(["h2", "http/1.1"])
        super().__init__()

    def _took(self, conn: socket.socket) -> None:
        threading.Thread(target=self._handshake, args=(conn,), daemon=True).start()

    def _handshake(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            self._held.append(self._context.wrap_socket(conn, server_side=True))
        except OSError:  # the client gave up on our certificate: what the test expects
            conn.close()
