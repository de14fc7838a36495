"""The transports' limits and their defaults.

A module of their own, free of the MCP SDK, so that the command line can
show them in ``actorstate serve --help`` (and refuse to serve with a clear
message) when the SDK is not installed.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_LINE_BYTES",
    "DEFAULT_MAX_PROTOCOL_SESSIONS",
    "DEFAULT_MAX_PROTOCOL_SESSIONS_PER_CLIENT",
    "DEFAULT_STOP_GRACE",
]

DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024
# Requests read and not answered on the wire yet; past it the transport stops
# reading until a reply is written. Bounds what a client that writes and
# never reads can make the server hold, whatever the size of the replies.
DEFAULT_MAX_IN_FLIGHT = 128
# After end of input or stop_intake(), how long requests already read may take to be answered.
DEFAULT_STOP_GRACE = 30.0

# HTTP: the older protocol's sessions held at once (see .http.HttpSettings).
DEFAULT_MAX_PROTOCOL_SESSIONS = 1000
# ...and by one principal (see .protocol_sessions): a tenth, so one cannot take them all.
DEFAULT_MAX_PROTOCOL_SESSIONS_PER_CLIENT = 100
