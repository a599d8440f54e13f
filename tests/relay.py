"""A TCP relay between a client and the gateway that can cut a connection mid-request, as a
ward's Wi-Fi does: the tests point real clients at it and watch them resume."""
from __future__ import annotations

import socket
import threading
from contextlib import suppress

from tests.services import free_port


class CuttingRelay:
    """Listens on a free loopback port and forwards every connection to ``target_port``.

    :meth:`cut_after` arms it: once that many more bytes went from the client to the gateway
    (over any of its connections), the connection carrying them is closed both ways, without
    an answer; then it is disarmed until armed again.
    """

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self._cut_at: int | None = None
        self.cuts = 0
        self._lock = threading.Lock()
        self._server = socket.create_server((host, self.port))
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def cut_after(self, nbytes: int) -> None:
        with self._lock:
            self._cut_at = nbytes

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream, True),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False),
                             daemon=True).start()

    def _budget(self, n: int) -> int | None:
        """How many of ``n`` bytes may pass before the cut (``None``: all, no cut)."""
        with self._lock:
            if self._cut_at is None:
                return None
            if n < self._cut_at:
                self._cut_at -= n
                return None
            allowed, self._cut_at = self._cut_at, None
            self.cuts += 1
            return allowed

    def _pipe(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                allowed = self._budget(len(data)) if upstream else None
                if allowed is not None:
                    dst.sendall(data[:allowed])
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with suppress(OSError):
                    sock.close()

    def close(self) -> None:
        self._stop = True
        with suppress(OSError):
            self._server.close()
