"""A response's head and its body in one write to the socket, not two.

Hypercorn (0.18, HTTP/1.1 through h11) writes a response's head as soon as the app sends
`http.response.start`, and the body when the app sends it: two writes and two TCP
segments for each answer. The app sends the two back to back, so holding the head until
the next write costs the client nothing, and the replicas and nginx spend less CPU per
request (docs/PERFORMANCE.md, "What the fast defaults are, and what they trade").

`install()` replaces `H11Protocol._send_h11_event`, Hypercorn's one place where an h11
event becomes bytes on the wire, with a version that keeps a final response's head (an
`h11.Response`: status 200 and up) and sends it with whatever the connection writes next,
the body or the end of the message. Interim responses (100 Continue, 101) still go at
once. A response whose head is held when the connection closes (the app failed after
`http.response.start`) is never sent: nginx then reads no answer at all, which it may
retry on another replica, where before it read a head and a cut-off body.

It is written against Hypercorn's 0.18 series, which pyproject.toml pins. `install()`
checks the installed version first: on any other it leaves Hypercorn alone and logs one
warning (the service works as before, one write slower per answer) until someone compares
this with the new method and moves SERIES. `HYPERCORN_ONE_WRITE=false` turns it off.
`python -m service` is the one caller; dev mode's reloader serves with Hypercorn as released.
"""

from __future__ import annotations

from importlib.metadata import version

import h11
from hypercorn.events import RawData
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.typing import H11SendableEvent

from service.logs import get_logger

# The Hypercorn series whose H11Protocol._send_h11_event this replaces.
SERIES = "0.18"


async def _send_h11_event(self: H11Protocol, event: H11SendableEvent) -> None:
    try:
        data = self.connection.send(event)
    except h11.LocalProtocolError:
        if self.connection.their_state != h11.ERROR:
            raise
        return
    if isinstance(event, h11.Response):
        self._held_head = data  # type: ignore[attr-defined]
        return
    head: bytes | None = self._held_head  # type: ignore[attr-defined]
    if head is not None:
        self._held_head = None  # type: ignore[attr-defined]
        data = head + data
    await self.send(RawData(data=data))


def install(enabled: bool = True) -> bool:
    """From now on every HTTP/1.1 connection Hypercorn serves writes head and body once,
    when `enabled` and the installed Hypercorn is of SERIES; whether it did."""
    if not enabled:
        return False
    installed = version("hypercorn")
    if installed.split(".")[:2] != SERIES.split("."):
        get_logger().warning("one_write_skipped", hypercorn=installed, written_for=SERIES)
        return False
    H11Protocol._held_head = None  # type: ignore[attr-defined]
    H11Protocol._send_h11_event = _send_h11_event  # type: ignore[method-assign]
    return True
