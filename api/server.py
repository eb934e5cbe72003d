"""`serve()`: run the API on uvicorn (what `behavior serve` calls)."""

from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from api.settings import get_settings
from api.state import ServingState


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
    log_config["loggers"]["api"] = {"handlers": ["default"], "level": log_level.upper(), "propagate": False}
    os.umask(0o077)   # the data home is private: the audit log, keys and erasure files the API writes are 0600
    uvicorn.run("api.main:create_app", factory=True, host=host, port=port, workers=workers,
                access_log=access_log, log_level=log_level, log_config=log_config,
                server_header=False, proxy_headers=False, loop=loop, http=PROTOCOLS[http],
                h11_max_incomplete_event_size=settings.max_header_bytes)
