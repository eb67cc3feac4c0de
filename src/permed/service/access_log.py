"""One access-log line per request without the query string or any body: query strings can carry
sample names and drug names, and the log is read by people who may not see patient data.

Replaces uvicorn's access log (`permed serve` turns that off). Pure ASGI, so it costs microseconds.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("permed.access")


class AccessLog:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            if log.isEnabledFor(logging.INFO):
                client = (scope.get("client") or ("-",))[0]
                log.info("%s %s %s %d %.1fms", client, scope["method"], scope["path"], status[0],
                         (time.perf_counter() - start) * 1000)
