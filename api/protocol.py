"""uvicorn's httptools protocol with the two limits uvicorn lacks (what `behavior serve` runs).

- The request head (request line and headers) is at most `max_header_bytes`; a larger one gets
  a 431 and the connection is closed as soon as the limit is passed, so a 20 MB header is never
  buffered.
- A request must arrive whole (head and body) within `request_timeout_s` of its first byte, and
  a new connection must send its first request within that time; else 408 (or a silent close if
  nothing was sent) and the connection is closed, so half-open and trickling connections do not
  hold a worker's sockets forever. Idle keep-alive connections keep uvicorn's own 5 s timeout.
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.problems import PROBLEM_MEDIA_TYPE
from api.settings import get_settings

HEAD_END = b"\r\n\r\n"


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.max_header_bytes = settings.max_header_bytes
        self.request_timeout_s = settings.request_timeout_s
        self._reading = True     # a request is being received (or awaited on a new connection)
        self._head = 0           # bytes of its head so far; -1 once the head is complete
        self._tail = b""         # the head's last 3 bytes so far, to find a HEAD_END split across reads
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._reading:    # the first bytes of the next request on a kept-alive connection
            self._reading, self._head, self._tail = True, 0, b""
            self._arm()
        if self._head >= 0:
            window = self._tail + data
            end = window.find(HEAD_END)
            size = self._head + (len(data) if end < 0 else end + len(HEAD_END) - len(self._tail))
            if size > self.max_header_bytes:
                self._refuse(431, f"the request line and headers are larger than {self.max_header_bytes} bytes")
                return
            self._head, self._tail = (size, window[-3:]) if end < 0 else (-1, b"")
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._head = -1   # the parser's word: what follows is body (or the next request)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading = False
        self._disarm()

    def _arm(self) -> None:
        self._disarm()
        if self.request_timeout_s > 0:
            self._timer = self.loop.call_later(self.request_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._head == 0:   # not a byte of a request: nobody to answer
            self.transport.close()
            return
        self._refuse(408, f"the request did not arrive whole within {self.request_timeout_s:g} s")

    def _refuse(self, status: int, detail: str) -> None:
        """Answer `status` as a problem document (unless a response is being sent) and close."""
        self._disarm()
        sending = self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete
        if not sending:
            phrase = HTTPStatus(status).phrase
            body = json.dumps({"type": "about:blank", "title": phrase, "status": status, "detail": detail}).encode()
            head = (f"HTTP/1.1 {status} {phrase}\r\ncontent-type: {PROBLEM_MEDIA_TYPE}\r\n"
                    f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
            self.transport.write(head + body)
        if self.cycle is not None:
            self.cycle.keep_alive = False
        self.transport.close()
