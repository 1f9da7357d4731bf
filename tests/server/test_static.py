"""/static: gzip for text assets, and revalidation (ETag / Last-Modified) so an upgrade is seen."""
from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from .conftest import ROOT


def test_text_assets_are_gzipped_and_revalidated(server):
    body = (ROOT / "static" / "js" / "main.js").read_bytes()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.get("/static/js/main.js", headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
        assert "accept-encoding" in r.headers["vary"].lower()
        assert r.headers["content-type"].startswith("text/javascript")
        assert int(r.headers["content-length"]) < len(body) / 2      # the bytes on the wire
        assert r.content == body                                      # httpx decoded them
        assert r.headers["cache-control"] == "no-cache"               # kept, but always asked
        etag, modified = r.headers["etag"], r.headers["last-modified"]
        assert etag.startswith('W/"')
        # unchanged: 304 with no body, from either validator
        for cond in ({"If-None-Match": etag}, {"If-Modified-Since": modified}):
            r = c.get("/static/js/main.js", headers={"Accept-Encoding": "gzip", **cond})
            assert r.status_code == 304 and r.content == b"", cond
            assert r.headers["cache-control"] == "no-cache"
        # a client that does not take gzip gets the file as it is
        r = c.get("/static/css/app.css", headers={"Accept-Encoding": "identity"})
        assert r.status_code == 200 and "content-encoding" not in r.headers
        assert r.content == (ROOT / "static" / "css" / "app.css").read_bytes()
        # the vendored chart library too (the largest file)
        r = c.get("/static/vendor/uplot/uPlot.iife.min.js", headers={"Accept-Encoding": "gzip"})
        assert r.headers["content-encoding"] == "gzip"
        assert r.content == (ROOT / "static/vendor/uplot/uPlot.iife.min.js").read_bytes()
        assert c.get("/static/js/nope.js").status_code == 404
        # the API is not touched by it
        r = c.get("/api/presets", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in r.headers and "cache-control" not in r.headers


def test_an_upgraded_file_is_served_at_once(make_server, tmp_path):
    """After an upgrade (a file changed on disk), the browser's revalidation gets the new file."""
    web = tmp_path / "web"
    shutil.copytree(ROOT / "static", web / "static")
    shutil.copytree(ROOT / "templates", web / "templates")
    s = make_server(env={"BACKPROP_WEB_DIR": str(web)}).start()
    path = web / "static" / "js" / "stream.js"
    with httpx.Client(base_url=s.url, timeout=30) as c:
        old = c.get("/static/js/stream.js", headers={"Accept-Encoding": "gzip"})
        assert old.status_code == 200 and old.content == path.read_bytes()
        new_text = path.read_text() + "\n// version 2\n"
        path.write_text(new_text)
        r = c.get("/static/js/stream.js", headers={
            "Accept-Encoding": "gzip", "If-None-Match": old.headers["etag"],
            "If-Modified-Since": old.headers["last-modified"]})
        assert r.status_code == 200 and r.text == new_text
        assert r.headers["etag"] != old.headers["etag"]
