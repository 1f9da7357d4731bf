"""The package as a user gets it."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_version_comes_from_the_package_metadata(monkeypatch):
    import importlib.metadata
    import tomllib

    from server import main
    written = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "7.8.9")
    assert main.package_version() == "7.8.9"

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert main.package_version() == written       # a checkout that is not installed
