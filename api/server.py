"""`serve()`: run the API on uvicorn (what `behavior serve` calls).

uvicorn's access log never holds a user id: `UserIdsHashed` writes the user id of a request
path (`/v1/users/{user_id}/...`, `/v1/admin/users/{user_id}`, a `user_id` query parameter) as
`#` and the first 16 hex digits of its keyed hash (the erasure log's hash, with the data home's
secret), e.g. `GET /v1/users/#3fa2c1d0e4b5a697/profile`: a user's lines can be found by whoever
holds the secret, and no id can be read from the log without it.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from behavior.store.erasure_log import ErasureLog
from api.settings import get_settings
from api.state import ServingState
from behavior.ids import normalize_id
from behavior.pii import erasure_hash

# the user id is all between the prefix and a known ending (ids may hold '/')
_USER_PATH = re.compile(r"^(/v1/(?:admin/)?users/)(.+?)(/profile|/recommendations)?$", re.S)
_QUERY_FORMS = {"/v1/users/profile", "/v1/users/recommendations"}   # the id is in ?user_id=
_USER_PARAMS = {"user_id"}
HASH_DIGITS = 16


class UserIdsHashed(logging.Filter):
    """A filter for uvicorn's access log: the user id of each request path and query string
    becomes `#<keyed hash, 16 hex digits>`."""

    def __init__(self, data_dir: str) -> None:
        super().__init__()
        self._erasure_log = ErasureLog(Path(data_dir))
        self._secret: bytes | None = None

    def _hash(self, raw: str) -> str:
        if self._secret is None:
            self._secret = self._erasure_log.secret(create=True)
        return "#" + erasure_hash(self._secret, normalize_id(raw))[:HASH_DIGITS]

    def path(self, path_and_query: str) -> str:
        """`path_and_query` (as uvicorn logs it: the path percent-encoded) with user ids hashed."""
        path, sep, query = path_and_query.partition("?")
        m = _USER_PATH.match(path) if path not in _QUERY_FORMS else None
        if m:
            path = m.group(1) + self._hash(unquote(m.group(2))) + (m.group(3) or "")
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(k in _USER_PARAMS for k, _ in pairs):
                query = urlencode([(k, self._hash(v) if k in _USER_PARAMS else v) for k, v in pairs], safe="#")
        return path + sep + query

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):  # uvicorn's access line
            record.args = (args[0], args[1], self.path(args[2]), args[3], args[4])
        return True


# uvloop and httptools (dependencies of the project) are compiled: with them one worker serves
# about 20% more requests per second than with asyncio's loop and the pure-Python h11 parser.
# (The fallbacks are for a platform without them, e.g. uvloop has no Windows build.)
LOOP = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
HTTP = "httptools" if importlib.util.find_spec("httptools") else "h11"
# httptools runs in api.protocol's subclass, which adds the header size limit and the request
# timeout; h11 has the size limit of its own and no timeout.
PROTOCOLS = {"httptools": "api.protocol:GuardedHttpToolsProtocol", "h11": "h11"}


def serve(data_dir: Path, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, *,
          access_log: bool = True, log_level: str = "info", loop: str = LOOP, http: str = HTTP) -> None:
    """Serve the active bundle of `data_dir` until interrupted. The other settings come from the
    environment (see api.settings). Raises BundleError (before binding the port) if no bundle
    has been published yet; a published but broken bundle is logged and the API waits for a good one.
    `loop` and `http` are uvicorn's event loop and HTTP parser (default: uvloop and httptools; the
    request timeout of BEHAVIOR_API_REQUEST_TIMEOUT needs httptools)."""
    data_dir = Path(data_dir).expanduser().absolute()
    # The app is built in each worker from the environment: pass the data dir on that way.
    os.environ["BEHAVIOR_DATA_DIR"] = str(data_dir)
    get_settings.cache_clear()
    settings = get_settings()
    ServingState(settings).current_version()  # no CURRENT -> a clear error now, not a 503 later
    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config.setdefault("filters", {})["user_ids"] = {"()": "api.server.UserIdsHashed", "data_dir": str(data_dir)}
    log_config["handlers"]["access"]["filters"] = ["user_ids"]
    log_config["loggers"]["api"] = {"handlers": ["default"], "level": log_level.upper(), "propagate": False}
    os.umask(0o077)   # the data home is private: the audit log, keys and erasure files the API writes are 0600
    uvicorn.run("api.main:create_app", factory=True, host=host, port=port, workers=workers,
                access_log=access_log, log_level=log_level, log_config=log_config,
                server_header=False, proxy_headers=False, loop=loop, http=PROTOCOLS[http],
                h11_max_incomplete_event_size=settings.max_header_bytes)
