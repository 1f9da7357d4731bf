"""``backprop-lab``: the engine's ``train`` and ``presets``, plus ``serve``, ``sweep`` and
``sweeps``."""
from __future__ import annotations

import copy
import logging
import os
import secrets
import sys
from pathlib import Path

from engine.cli import build_parser as engine_parser
from engine.cli import main as engine_main

from .settings import Settings, is_loopback


def add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="start the web dashboard and API",
                       description="Serve the dashboard and API. Options also come from "
                                   "BACKPROP_HOST, BACKPROP_PORT, BACKPROP_DATA_DIR, "
                                   "BACKPROP_TOKEN, BACKPROP_MAX_WORKERS, BACKPROP_DASK.")
    p.add_argument("--host", help="address to bind (default 127.0.0.1; any other address "
                                  "requires a token)")
    p.add_argument("--port", type=int, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--data-dir", help="where runs are kept (default ./data)")
    p.add_argument("--token", help="API token (generated and printed for non-loopback binds)")
    p.add_argument("--max-workers", type=int,
                   help="runs trained at once (default: the number of cores)")
    p.add_argument("--dask", metavar="ADDR|local",
                   help="sweep trials go to this Dask scheduler (tcp://HOST:PORT), or to an "
                        "in-process LocalCluster ('local'); checked at start")
    p.set_defaults(func=cmd_serve)


def build_parser():
    parser = engine_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    add_serve_parser(sub)
    from .sweep.cli import add_sweep_parsers
    add_sweep_parsers(sub)
    return parser


def log_config(level: str) -> dict:
    """uvicorn's logging, with every handler redacting ``token=...``."""
    from uvicorn.config import LOGGING_CONFIG
    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["filters"] = {"redact": {"()": "server.security.RedactTokens"}}
    for h in cfg["handlers"].values():
        h["filters"] = ["redact"]
    cfg["loggers"]["backprop_lab"] = {"handlers": ["default"], "level": level.upper(),
                                      "propagate": False}
    return cfg


def cmd_serve(args) -> int:
    from pydantic import ValidationError
    over = {k: v for k, v in {"host": args.host, "port": args.port, "data_dir": args.data_dir,
                              "token": args.token, "max_workers": args.max_workers,
                              "dask": args.dask}.items()
            if v is not None}
    try:
        settings = Settings(**over)
    except ValidationError as e:
        for err in e.errors():
            print(f"error: --{'-'.join(str(p) for p in err['loc']).replace('_', '-')}: "
                  f"{err['msg']}", file=sys.stderr)
        return 2
    if settings.dask and settings.dask != "local":
        from .sweep.dask_runner import DaskError, probe
        try:
            probe(settings.dask)
        except DaskError as e:
            print(f"error: --dask: {e}", file=sys.stderr)
            return 2
    generated = False
    if not is_loopback(settings.host) and not settings.token:
        settings.token = secrets.token_urlsafe(24)
        generated = True
    from .db import Store, StoreError
    probe = Store(settings.db_path)
    try:
        probe.open()
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        probe.close()
    import uvicorn
    from .main import create_app
    app = create_app(settings)
    shown = settings.host if ":" not in settings.host else f"[{settings.host}]"
    print(f"Backprop Lab: http://{shown}:{settings.port}/  (data in "
          f"{Path(settings.data_dir).resolve()}, up to {settings.max_workers} workers)",
          flush=True)
    if generated:     # printed once, here, for the person starting it; never logged
        print(f"Token (required for non-loopback access): open "
              f"http://{shown}:{settings.port}/?token={settings.token}", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=log_config(
        settings.log_level), log_level=settings.log_level, ws="websockets-sansio",
        ws_max_size=64 * 1024, ws_per_message_deflate=False, timeout_graceful_shutdown=5,
        server_header=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.getLogger("backprop_lab").setLevel(logging.INFO)
    return engine_main(argv, parser=build_parser())


if __name__ == "__main__":
    raise SystemExit(main())
