"""The package as a user gets it: a wheel installed into a fresh venv serves the page from any
folder, and an editable install of a checkout does too.

The wheel is built from a copy of the repository (the checkout gets no build/ or egg-info),
the way ``pip install`` builds it: setuptools from PyPI in an isolated build environment unless
this interpreter already has setuptools >= 70.1 (which can build wheels by itself). The fresh
venv sees this interpreter's site-packages through a ``.pth`` line, so no dependency is
downloaded, and none of its ``.pth`` files (an editable install of this checkout) take effect.
"""
from __future__ import annotations

import asyncio
import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
TOP_SKIP = {".git", ".venv", "data", "build", "dist", ".pytest_cache", "artifacts"}
NO_SETUPTOOLS = ("No matching distribution found for setuptools",
                 "Could not find a version that satisfies the requirement setuptools")


def copy_repo(dest: Path) -> Path:
    """The checkout's files, without its venv, caches and build output."""
    shutil.copytree(ROOT, dest, ignore=lambda d, names: [
        n for n in names if (Path(d) == ROOT and n in TOP_SKIP) or n == "__pycache__"
        or n.endswith(".egg-info")])
    # A venv inside the checkout, as the README's commands make one: it must stay out.
    (dest / ".venv" / "lib").mkdir(parents=True)
    (dest / ".venv" / "lib" / "decoy.py").write_text("raise SystemExit('packaged .venv')\n")
    return dest


def pip(python: Path | str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check",
                           "--no-input", *args], capture_output=True, text=True, timeout=600)


def needs_isolation() -> bool:
    """True unless this interpreter's setuptools can build a wheel with no download."""
    try:
        major, minor = (int(x) for x in importlib.metadata.version("setuptools").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return True
    return (major, minor) < (70, 1)


def check(result: subprocess.CompletedProcess, what: str) -> None:
    out = result.stdout + result.stderr
    if result.returncode and any(s in out for s in NO_SETUPTOOLS):
        pytest.skip(f"{what}: setuptools could not be fetched from PyPI (offline?)")
    assert result.returncode == 0, f"{what} failed:\n{out[-4000:]}"


def fresh_venv(path: Path) -> Path:
    """A venv with no pip and no project, seeing this interpreter's installed packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                   timeout=120)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True).stdout
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site.strip()) / "_outer_site.pth").write_text("\n".join(sorted(ours)) + "\n")
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(venv: Path) -> dict:
    """No BACKPROP_* setting (BACKPROP_WEB_DIR would mask the test) and no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BACKPROP_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def serve_and_fetch(venv: Path, folder: Path) -> dict[str, httpx.Response]:
    """``backprop-lab serve`` started in ``folder``: GET /, a script and /api/health."""
    folder.mkdir()
    port = free_port()
    log = folder.parent / f"{folder.name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(venv / "bin" / "backprop-lab"), "serve", "--port", str(port),
                                 "--data-dir", "lab-data", "--max-workers", "1"],
                                cwd=folder, env=clean_env(venv), stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"server exited:\n{log.read_text()[-3000:]}"
            try:
                if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"server did not answer:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=30) as c:
            return {p: c.get(p) for p in ("/", "/static/js/main.js", "/static/css/app.css",
                                          "/api/health")}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def assert_serves_the_page(got: dict[str, httpx.Response], version: str) -> None:
    page = got["/"]
    assert page.status_code == 200, page.text[:2000]
    # the rendered template (Jinja expanded), not the placeholder
    assert '<script type="module" src="/static/js/main.js">' in page.text, page.text[:2000]
    for path in ("/static/js/main.js", "/static/css/app.css"):
        r = got[path]
        assert r.status_code == 200, path
        assert r.content == (ROOT / path.removeprefix("/")).read_bytes(), path
    assert got["/api/health"].json()["version"] == version


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = copy_repo(tmp / "src")
    args = ["wheel", "--no-deps", "-w", str(tmp / "dist"), str(src)]
    if not needs_isolation():
        args.insert(1, "--no-build-isolation")
    check(pip(sys.executable, *args), "pip wheel")
    (whl,) = (tmp / "dist").glob("backprop_lab-*.whl")
    return whl


def test_the_wheel_holds_the_page_and_no_tests(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for folder, inside in (("static", "server/web/static"), ("templates", "server/web/templates")):
        files = [p.relative_to(ROOT / folder).as_posix() for p in (ROOT / folder).rglob("*")
                 if p.is_file()]
        assert files
        missing = [f for f in files if f"{inside}/{f}" not in names]
        assert not missing, f"{folder}/ files missing from the wheel: {missing}"
    assert "engine/data/mnist/train-images-idx3-ubyte.gz" in names
    dist_info = "-".join(wheel.name.split("-")[:2]) + ".dist-info"
    assert {n.split("/")[0] for n in names} == {"engine", "server", dist_info}
    assert not [n for n in names if "tests/" in n or ".venv" in n or "__pycache__" in n]


def test_an_installed_wheel_serves_the_page_from_any_folder(wheel, tmp_path):
    python = fresh_venv(tmp_path / "venv")
    check(pip(sys.executable, "--python", str(python), "install", "--no-deps", "--no-index",
              str(wheel)), "pip install wheel")
    version = wheel.name.split("-")[1]
    where = subprocess.run([str(python), "-c", "import server, importlib.metadata as m; "
                            "print(server.__file__); print(m.version('backprop-lab'))"],
                           cwd=tmp_path, env=clean_env(tmp_path / "venv"), capture_output=True,
                           text=True, check=True).stdout.split()
    assert Path(where[0]).is_relative_to(tmp_path / "venv"), where   # not this checkout
    assert where[1] == version
    assert_serves_the_page(serve_and_fetch(tmp_path / "venv", tmp_path / "empty"), version)


def test_an_editable_install_serves_the_checkouts_page(tmp_path):
    src = copy_repo(tmp_path / "src")
    python = fresh_venv(tmp_path / "venv")
    check(pip(sys.executable, "--python", str(python), "install", "--no-deps", "-e", str(src)),
          "pip install -e")
    where = subprocess.run([str(python), "-c", "import server; print(server.__file__)"],
                           cwd=tmp_path, env=clean_env(tmp_path / "venv"), capture_output=True,
                           text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(src), where
    # the copy's own page, so a change in the checkout is what an editable install serves
    (src / "static" / "css" / "app.css").write_text("/* edited in the checkout */\n")
    got = serve_and_fetch(tmp_path / "venv", tmp_path / "empty")
    assert '<script type="module" src="/static/js/main.js">' in got["/"].text
    assert got["/static/css/app.css"].text == "/* edited in the checkout */\n"
    assert got["/static/js/main.js"].content == (ROOT / "static/js/main.js").read_bytes()


# ---------------------------------------------------------------- in process, no install


def test_the_version_comes_from_the_package_metadata(monkeypatch):
    import tomllib

    from server import main
    written = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "7.8.9")
    assert main.package_version() == "7.8.9"

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert main.package_version() == written       # a checkout that is not installed


def test_the_web_folder_is_the_installed_copy_then_the_checkout(monkeypatch, tmp_path):
    from server import main
    from server.settings import Settings
    settings = Settings(data_dir=tmp_path / "data", web_dir=None)
    assert main.find_web_dir(settings) == ROOT                 # a checkout has no server/web
    wheel_like = tmp_path / "web"
    (wheel_like / "templates").mkdir(parents=True)
    monkeypatch.setattr(main, "INSTALLED_WEB_DIR", wheel_like)
    assert main.find_web_dir(settings) == wheel_like
    assert main.find_web_dir(Settings(web_dir=ROOT)) == ROOT   # BACKPROP_WEB_DIR wins
    # a folder without the page: a placeholder naming it, and 404 (not 500) for scripts
    async def fetch():
        transport = httpx.ASGITransport(app=main.create_app(settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return await c.get("/"), await c.get("/static/js/main.js")
    page, script = asyncio.run(fetch())
    assert page.status_code == 200 and f"not found under {wheel_like}" in page.text
    assert script.status_code == 404
