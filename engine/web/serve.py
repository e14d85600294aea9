"""``engine serve``: check what the server needs, then run the application on uvicorn.

uvicorn stops on SIGTERM and SIGINT: it finishes the requests in flight, then the application's
shutdown waits for the running tick (:mod:`engine.web.ticker`). A stop by SIGTERM exits with 0
(the service manager asked for it); Ctrl-C with 130, as every command.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
from pathlib import Path

import uvicorn

from ..api import Engine
from ..clock import parse_every
from ..errors import ConfigError, UsageError
from ..links import signer
from .app import create_app


def serve(args: argparse.Namespace) -> int:
    workspace = Path(getattr(args, "workspace", "."))
    with Engine.open(workspace, store=args.store) as engine:  # engine.yaml and the store, checked first
        web = engine.plan.settings.web
        engine.store  # noqa: B018 - opens (and if need be creates) the store now, not on the first request
    key = signer(web)
    if key is None:
        raise ConfigError(f"engine serve needs the key that signs links and cookies: set the environment variable "
                          f"{web.secret_env} (engine.yaml's web.secret_env)")
    every = None if re.fullmatch(r"0+[smhdw]?", args.tick_every.strip()) else parse_every(args.tick_every)
    if not args.host.strip():
        raise UsageError("--host must not be empty (127.0.0.1: this machine only; 0.0.0.0: every interface)")
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port must be between 1 and 65535, not {args.port}")
    logging.basicConfig(level=logging.INFO, format="engine serve: %(message)s")
    app = create_app(workspace, key, store=args.store, tick_every=every)
    if not web.base_url:
        logging.getLogger("engine.serve").warning("engine.yaml sets no web.base_url: messages carry no links to this server")
    stopped_by: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda number, frame: stopped_by.append(number))
    try:  # uvicorn handles SIGTERM (a graceful stop), then raises it again: ours notes it, and we exit 0
        uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False, server_header=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
