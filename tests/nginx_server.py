"""A real nginx on 127.0.0.1 serving a folder, for tests that need a real static web server.

:class:`NginxSite` starts Debian's ``/usr/sbin/nginx`` as the current user with a private
prefix in a temporary folder (its config, pid file, error and access logs and temp paths
all live there), on a free port of 127.0.0.1, and stops it on exit::

    with NginxSite(Path("/usr/share/doc/python-flask-doc/html")) as site:
        fetch(site.url + "index.html")
        site.sync_log()
        assert ("GET", "/index.html", 200) in site.requests()

The server is plain nginx: ``index index.html``, no autoindex (a folder without an
``index.html`` answers 403), a folder asked for without its trailing slash answers 301 to
``http://127.0.0.1:PORT/folder/``, symbolic links are followed, ``charset utf-8``, and a
fixed MIME map (:data:`MIME_TYPES`, so the answers do not depend on /etc/nginx). When
started as root, its worker runs as root too, so it can read any folder the test can.

Without nginx the tests that use it are skipped, unless ``SHOAL_REQUIRE_NGINX=1``, which
makes them fail instead.
"""

from __future__ import annotations

import contextlib
import grp
import http.client
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

import pytest

from tests.helpers import free_port

#: Debian's nginx (package ``nginx``).
NGINX = "/usr/sbin/nginx"

#: How long :meth:`NginxSite.__enter__` waits for the port to accept connections.
START_TIMEOUT = 10.0

#: How many ports :meth:`NginxSite.__enter__` tries when nginx cannot bind the one it picked.
PORT_ATTEMPTS = 5

#: The MIME type of each file name extension (nginx's ``types``; anything else is
#: ``application/octet-stream``). The common part of Debian's /etc/nginx/mime.types.
MIME_TYPES: dict[str, tuple[str, ...]] = {
    "text/html": ("html", "htm", "shtml"),
    "text/css": ("css",),
    "text/xml": ("xml",),
    "text/plain": ("txt",),
    "application/javascript": ("js",),
    "application/json": ("json",),
    "application/xhtml+xml": ("xhtml",),
    "application/rss+xml": ("rss",),
    "application/atom+xml": ("atom",),
    "application/pdf": ("pdf",),
    "application/gzip": ("gz",),
    "application/zip": ("zip",),
    "image/png": ("png",),
    "image/gif": ("gif",),
    "image/jpeg": ("jpeg", "jpg"),
    "image/svg+xml": ("svg", "svgz"),
    "image/webp": ("webp",),
    "image/x-icon": ("ico",),
    "font/woff": ("woff",),
    "font/woff2": ("woff2",),
    "font/ttf": ("ttf",),
    "application/vnd.ms-fontobject": ("eot",),
}

#: The access log's format: method, status, then the request target exactly as sent
#: (``$request_uri``: path and query, percent-encoding untouched), separated by spaces.
LOG_FORMAT = "$request_method $status $request_uri"

#: The path prefix of :meth:`NginxSite.sync_log`'s own requests (left out of the log).
SYNC_PREFIX = "/.nginx-site-sync-"


class LoggedRequest(NamedTuple):
    """One line of the access log: a tuple ``(method, path, status)``."""

    method: str
    path: str
    status: int


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _require_nginx(nginx: str) -> None:
    """Skip the test (or fail it under ``SHOAL_REQUIRE_NGINX=1``) without an nginx binary."""
    if os.access(nginx, os.X_OK):
        return
    reason = f"nginx is not installed ({nginx} missing: apt-get install nginx)"
    if os.environ.get("SHOAL_REQUIRE_NGINX") == "1":
        pytest.fail(f"{reason}, and SHOAL_REQUIRE_NGINX=1 requires it")
    pytest.skip(reason)


class NginxSite:
    """nginx serving ``root`` on ``127.0.0.1:PORT`` while the context is open.

    ``extra_server`` is pasted into the ``server`` block (e.g. a ``location`` that
    redirects), ``extra_http`` into the ``http`` block.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        extra_server: str = "",
        extra_http: str = "",
        nginx: str = NGINX,
    ) -> None:
        self.root = Path(root).resolve()
        self.extra_server = extra_server
        self.extra_http = extra_http
        self.nginx = nginx
        self.port = 0
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The site's root, ``http://127.0.0.1:PORT/``."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def prefix(self) -> Path:
        """The private folder: config, logs, pid file and temp paths."""
        if self._dir is None:
            raise RuntimeError("the site is not running")
        return self._dir

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    @property
    def error_log_path(self) -> Path:
        return self.prefix / "error.log"

    def error_log(self) -> str:
        """The error log's text (nginx's own messages, including its start-up errors)."""
        texts = []
        for name in ("error.log", "stderr.log"):
            with contextlib.suppress(OSError):
                texts.append((self.prefix / name).read_text(errors="replace"))
        return "".join(texts)

    def requests(self) -> list[LoggedRequest]:
        """Every request served so far, in the order nginx finished them.

        nginx writes each line when it finishes a request; call :meth:`sync_log` first to be
        sure that every request a client has seen the answer to is in.
        """
        try:
            text = self.access_log.read_text(encoding="utf-8", errors="surrogateescape")
        except FileNotFoundError:
            return []
        logged = []
        for line in text.splitlines():
            parts = line.split(" ", 2)
            if len(parts) != 3 or not parts[1].isdigit():
                continue
            method, status, path = parts
            if path.startswith(SYNC_PREFIX):
                continue
            logged.append(LoggedRequest(method, path, int(status)))
        return logged

    def sync_log(self, timeout: float = 5.0) -> None:
        """Make sure the access log holds every request answered before this call.

        nginx logs a request when it finishes it, a moment after the client got the last
        byte; with one worker, a request that arrives later is logged later, so this sends
        one (left out of :meth:`requests`) and waits until its line is in the log.
        """
        marker = f"{SYNC_PREFIX}{uuid.uuid4().hex}"
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", marker)
            connection.getresponse().read()
        finally:
            connection.close()
        deadline = time.monotonic() + timeout
        while marker not in self.access_log.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not log {marker} within {timeout} s")
            time.sleep(0.01)

    def config(self) -> str:
        """The nginx.conf for the current port and prefix."""
        tmp = self.prefix
        user = ""
        if os.geteuid() == 0:
            # Root's master would run its worker as nobody, who may not read the root or
            # write the temp paths: keep the worker as the current user.
            owner = pwd.getpwuid(os.geteuid()).pw_name
            group = grp.getgrgid(os.getegid()).gr_name
            user = f"user {owner} {group};"
        types = "\n".join(
            f"        {mime} {' '.join(extensions)};" for mime, extensions in MIME_TYPES.items()
        )
        temp_paths = "\n".join(
            f"    {kind}_temp_path {tmp / (kind + '_temp')};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        return f"""\
{user}
daemon off;
master_process on;
worker_processes 1;
pid {tmp / "nginx.pid"};
lock_file {tmp / "nginx.lock"};
error_log {self.error_log_path} notice;

events {{
    worker_connections 256;
}}

http {{
    types {{
{types}
    }}
    default_type application/octet-stream;
    charset utf-8;
    log_format nginx_site '{LOG_FORMAT}';
    access_log {self.access_log} nginx_site;
{temp_paths}
    server_tokens off;
{self.extra_http}
    server {{
        listen 127.0.0.1:{self.port};
        server_name 127.0.0.1;
        root {self.root};
        index index.html;
        autoindex off;
{self.extra_server}
    }}
}}
"""

    def __enter__(self) -> NginxSite:
        _require_nginx(self.nginx)
        if not self.root.is_dir():
            raise FileNotFoundError(f"the site's root is not a folder: {self.root}")
        self._dir = Path(tempfile.mkdtemp(prefix="nginx-site-"))
        try:
            for attempt in range(PORT_ATTEMPTS):
                if self._start():
                    return self
                if attempt + 1 < PORT_ATTEMPTS:
                    time.sleep(0.1)
            raise RuntimeError(
                f"nginx could not bind a free port in {PORT_ATTEMPTS} attempts:\n"
                + self.error_log()
            )
        except BaseException:
            self._stop()
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            raise

    def _start(self) -> bool:
        """Start nginx on a fresh free port: True once it accepts connections, False when
        the port was taken meanwhile (another try may do); raise on any other failure."""
        self.port = free_port()
        for name in ("error.log", "stderr.log", "access.log"):
            (self.prefix / name).unlink(missing_ok=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(self.config())
        with (self.prefix / "stderr.log").open("wb") as stderr:
            self._process = subprocess.Popen(
                [
                    self.nginx,
                    "-p",
                    f"{self.prefix}/",
                    "-c",
                    str(conf),
                    "-e",
                    str(self.error_log_path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                errors = self.error_log()
                self._process = None
                if "Address already in use" in errors:
                    return False
                raise RuntimeError(f"nginx exited at start-up:\n{errors}")
            if self._listening():
                return True
            time.sleep(0.02)
        self._stop()
        raise RuntimeError(
            f"nginx did not accept connections on 127.0.0.1:{self.port} within "
            f"{START_TIMEOUT} s:\n{self.error_log()}"
        )

    def _listening(self) -> bool:
        """Whether our nginx serves the port: it wrote its pid file (so it bound the port:
        nginx binds before it writes it) and it answers and logs a request."""
        assert self._process is not None
        try:
            pid = int((self.prefix / "nginx.pid").read_text().strip() or 0)
        except (OSError, ValueError):
            return False
        if pid != self._process.pid or not _accepts(self.port):
            return False
        try:
            self.sync_log(timeout=2.0)
        except (OSError, http.client.HTTPException, RuntimeError):
            return False
        return True

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        # SIGQUIT: graceful shutdown (idle keep-alive connections are closed at once).
        for sig, wait in ((signal.SIGQUIT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            process.send_signal(sig)
            try:
                process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
