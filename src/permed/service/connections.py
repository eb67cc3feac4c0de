"""Connection limits uvicorn lacks: a header-read timeout, a cap on the header's size while it is still
being received, and a cap on concurrent connections per client address.

uvicorn (httptools) keeps a connection that has sent half a request line for ever and buffers
headers of any size; ~20,000 such connections exhausted the file descriptors. This subclass of its
httptools protocol closes a connection whose request header is not complete `header_timeout` seconds
after the connection opened (or after the previous response), answers 431 and closes once a header
grows past `max_header_bytes`, and closes at once a connection beyond `max_per_client` from one
address. Behind a reverse proxy every connection comes from the proxy: see docs/security.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("permed.access")


def guarded_protocol(header_timeout: float, max_header_bytes: int, max_per_client: int) -> type:
    """An HttpToolsProtocol class with these limits (uvicorn's `http=` takes the class)."""
    open_per_client: Counter[str] = Counter()  # one server process, one event loop: no lock needed
    warned: dict[str, float] = {}  # address -> when its refused connections were last logged

    class GuardedHttpTools(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _header_bytes = 0
        _awaiting_header = True
        _counted: str | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            host = self.client[0] if self.client else None
            if host is not None and max_per_client > 0:
                if open_per_client[host] >= max_per_client:
                    now = self.loop.time()
                    if now - warned.get(host, -60.0) >= 60.0:  # a flood is one log line a minute, not one each
                        if len(warned) > 10_000:
                            warned.clear()
                        warned[host] = now
                        log.warning("%s connections refused: %d open from this address", host, open_per_client[host])
                    transport.abort()  # no answer: a reset costs the attacker as much as us
                    return
                open_per_client[host] += 1
                self._counted = host
            self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            if self._counted is not None:
                open_per_client[self._counted] -= 1
                if open_per_client[self._counted] <= 0:
                    del open_per_client[self._counted]
                self._counted = None
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._awaiting_header, self._header_bytes = True, 0
            self._header_timer = self.loop.call_later(header_timeout, self._header_timed_out)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timed_out(self) -> None:
            self._header_timer = None
            if self._awaiting_header and not self.transport.is_closing():
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self._awaiting_header:
                self._header_bytes += len(data)
                # counted per packet (cheaper than per header); the body may come in the same packets, so
                # allow it some room: the app's guard checks the header's exact size (431)
                if self._header_bytes > max_header_bytes + 65536 and self.parser is not None:
                    self._refuse_header()
                    return
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self._awaiting_header = False
            self._disarm()
            if self.transport.is_closing():
                return
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and not self.pipeline:
                self._arm()  # the next request's header has the same time (keep-alive closes idle ones first)

        def _refuse_header(self) -> None:
            if self.transport.is_closing():
                return
            body = b'{"detail":"request headers too large"}'
            self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                                 b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
                                 + body)
            self.transport.close()

    return GuardedHttpTools
