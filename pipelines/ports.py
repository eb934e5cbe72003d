"""Whether the API can listen where it is asked to, checked before any long work."""

from __future__ import annotations

import errno
import socket

from behavior.errors import BehaviorError


class PortUnavailable(BehaviorError):
    """The API cannot listen on host:port (in use, privileged, or no such address)."""


def check_port(host: str, port: int) -> None:
    """Raises PortUnavailable, saying how to choose another port, unless `host:port` can be bound
    now. The socket is bound as uvicorn binds it (SO_REUSEADDR: a port in TIME_WAIT is free,
    one another server listens on is not) and closed at once."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise PortUnavailable(f"--host {host}: not an address of this machine ({exc.strerror}); "
                              "use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)") from None
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            other = port + 1 if 1023 <= port < 65535 else 8001
            hint = f"choose another with --port, e.g. --port {other} (make demo PORT={other})"
            if exc.errno == errno.EADDRINUSE:
                raise PortUnavailable(f"port {port} on {host} is already in use (another server?): {hint}") from None
            if exc.errno == errno.EACCES:
                raise PortUnavailable(f"port {port} on {host} needs administrator rights: {hint}") from None
            raise PortUnavailable(f"cannot listen on {host}:{port} ({exc.strerror}): check --host, or {hint}") from None
