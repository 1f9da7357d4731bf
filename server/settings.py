"""All server settings in one place (environment variables ``BACKPROP_*``; the CLI overrides)."""
from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """True for localhost and any 127.0.0.0/8 or ::1 address."""
    h = host.strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """The server's configuration. ``BACKPROP_DATA_DIR=/srv/lab backprop-lab serve`` etc."""

    model_config = SettingsConfigDict(env_prefix="BACKPROP_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    data_dir: Path = Path("data")
    token: str | None = Field(None, description="required on every API call when set; "
                                                "generated for non-loopback binds")
    max_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    allowed_hosts: list[str] = Field(default_factory=list,
                                     description="extra Host names accepted besides loopback "
                                                 "and the bound host")
    web_dir: Path | None = Field(None, description="folder holding templates/ and static/; "
                                                   "default: the copy installed with the "
                                                   "package, else the repository root")
    # Limits at the edge.
    max_body_bytes: int = Field(1 << 20, ge=1024, description="JSON request bodies")
    max_upload_bytes: int = Field(64 << 20, ge=1024, description="uploaded .npz weights")
    max_json_depth: int = Field(32, ge=4, le=200)
    # Workers.
    heartbeat_seconds: float = Field(1.0, gt=0, le=60)
    heartbeat_timeout_seconds: float = Field(15.0, gt=0,
                                             description="a worker silent this long is killed")
    checkpoint_seconds: float = Field(10.0, gt=0, description="periodic checkpoint interval")
    checkpoint_budget_mb: float = Field(50.0, ge=0, description="disk kept per run for its "
                                        "checkpoints through time (one per evaluation, thinned "
                                        "when over; 0 keeps none)")
    shutdown_grace_seconds: float = Field(3.0, ge=0, le=60)
    command_wait_seconds: float = Field(5.0, ge=0, le=60,
                                        description="how long pause/resume/stop wait to report "
                                                    "the new state")
    # Streaming and storage.
    client_queue_size: int = Field(512, ge=8, description="newest messages kept in memory per "
                                                          "stream; a client further behind reads "
                                                          "the rest from the database")
    client_stuck_seconds: float = Field(10.0, gt=0,
                                        description="a client whose send blocks this long is dropped")
    snapshot_live_interval: float = Field(0.25, ge=0,
                                          description="at most one snapshot per interval is streamed")
    snapshot_store_interval: float = Field(5.0, ge=0,
                                           description="at most one snapshot per interval is stored")
    runs_feed_interval: float = Field(0.5, ge=0, description="min seconds between `latest` updates "
                                                              "per run on WS /ws/runs")
    log_level: str = "info"
    # Sweeps.
    dask: str | None = Field(None, description="sweep trials go to this Dask scheduler: "
                                               "tcp://HOST:PORT, or 'local' for an in-process "
                                               "LocalCluster")
    dask_local_workers: int = Field(2, ge=1, le=64, description="worker processes of the "
                                    "LocalCluster that --dask local starts")
    dask_progress_rate: float = Field(0.0, ge=0, description="max progress events/s a remote "
                                      "(Dask) trial sends; eval and terminal events always go; "
                                      "0: every one (benchmarks/README.md, Ingest)")

    @field_validator("dask")
    @classmethod
    def _dask_address(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        from .sweep.dask_runner import check_address   # pure parsing, no dask import
        return check_address(v)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "backprop-lab.sqlite3"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def token_required(self) -> bool:
        return bool(self.token)

    @property
    def any_host(self) -> bool:
        """A wildcard bind (0.0.0.0, ::) answers to whatever name reaches it; the token guards it."""
        return self.host in ("0.0.0.0", "::", "")

    def allowed_host_names(self) -> set[str]:
        """Host header names (without port) that this server answers to."""
        names = {n.lower() for n in LOOPBACK_NAMES}
        names.update(h.lower() for h in self.allowed_hosts)
        if self.host not in ("0.0.0.0", "::", ""):
            names.add(self.host.lower())
        return names
