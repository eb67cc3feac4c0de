"""One access-log line per request, and unhandled errors logged without their message.

Query strings and bodies are never logged: query strings can carry sample names and drug names, and
the log is read by people who may not see patient data. Replaces uvicorn's access log (`permed serve`
turns that off). An exception that escapes a route is answered with a plain 500 here and logged as
its type and stack frames only, since a message can quote patient data (Starlette's default would
log it in full). Pure ASGI, so it costs microseconds.
"""

from __future__ import annotations

import logging
import time
import traceback

log = logging.getLogger("permed.access")
errors = logging.getLogger("permed.error")


class AccessLog:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [0]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception as exc:
            errors.error("%s %s failed with %s at\n%s", scope["method"], scope["path"], type(exc).__name__,
                         "".join(traceback.format_tb(exc.__traceback__)).rstrip())
            if status[0] == 0:  # nothing sent yet: answer, rather than let the server log the message
                status[0] = 500
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": b'{"detail":"internal server error"}'})
        finally:
            if log.isEnabledFor(logging.INFO):
                client = (scope.get("client") or ("-",))[0]
                log.info("%s %s %s %d %.1fms", client, scope["method"], scope["path"], status[0],
                         (time.perf_counter() - start) * 1000)
