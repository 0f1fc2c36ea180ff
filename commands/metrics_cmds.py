"""`secrets metrics`: Prometheus exposition of the ledger's metrics, and its alert rules.

Metrics hold names and counts, never values, so every role may read them (Permission.AUDIT).
The caller's credential is checked once, when the command starts: `serve` then runs as the
operator who started it, even after that session expires (use SECRETS_LEDGER_TOKEN for a
service account). prometheus_client is imported inside the commands: it costs ~125 ms.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from commands import runtime
from commands.options import CatalogueOpt, HomeOpt

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.registry import CollectorRegistry

metrics_app = typer.Typer(
    help="Prometheus metrics derived from the ledger, and the alert rules.",
    no_args_is_help=True,
)

DEFAULT_BIND = "127.0.0.1"
DEFAULT_PORT = 9464


def _authorized_registry(
    home: Path | None, action: str, catalogue: Path | None
) -> CollectorRegistry:
    from ledger.access.policy import Permission
    from ledger.rotation.catalogue import load_catalogue
    from projections.metrics import ledger_registry

    # Loaded first: a broken team catalogue is exit 5 before anything is served or written.
    known = load_catalogue(catalogue)
    ledger = runtime.open_ledger(home)
    principal = ledger.authorize(runtime.credential(ledger), Permission.AUDIT, action)
    runtime.info(f"metrics of {ledger.home} as {principal.operator} ({principal.role})")
    return ledger_registry(ledger, catalogue=known)


INDEX_TEXT = b"secrets-ledger metrics exporter: scrape /metrics (docs/metrics.md)\n"


def _guarded(registry: CollectorRegistry) -> Callable[..., Iterable[bytes]]:
    """The prometheus_client WSGI app on /metrics only (a pointer on /, 404 elsewhere),
    answering 503 when the ledger cannot be read.

    wsgiref would print a traceback on stderr for an exception; the structured log gets the
    exception's class instead, and Prometheus sees the target down.
    """
    from prometheus_client import make_wsgi_app

    from commands import oplog

    inner = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [INDEX_TEXT]
        if path != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found: the metrics are at /metrics\n"]
        try:
            return inner(environ, start_response)  # type: ignore[no-any-return]
        except Exception as exc:
            oplog.emit("error", "scrape", operation="metrics serve", error=type(exc).__name__)
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"the ledger could not be read; see the exporter's log\n"]

    return app


def _make_server(bind: str, port: int, app: Callable[..., Iterable[bytes]]) -> WSGIServer:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client.exposition import ThreadingWSGIServer

    family = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM)[0][0]

    class Server(ThreadingWSGIServer):
        address_family = family

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per scrape would drown the operation log

    return make_server(bind, port, app, Server, handler_class=QuietHandler)


@metrics_app.command("serve")
def serve(
    bind: Annotated[
        str, typer.Option("--bind", help="Address to listen on (keep it on loopback).")
    ] = DEFAULT_BIND,
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="TCP port; 0 picks a free one.")
    ] = DEFAULT_PORT,
    catalogue: CatalogueOpt = None,
    home: HomeOpt = None,
) -> None:
    """Serve /metrics over HTTP (text format, or OpenMetrics when the scraper asks for it).

    Every scrape catches the read model up with the ledger first. Runs until SIGTERM or
    Ctrl-C, then exits 0. Checks the caller's session or SECRETS_LEDGER_TOKEN once, at start.

    Example: secrets metrics serve --bind 127.0.0.1 --port 9464
    """
    registry = _authorized_registry(home, "metrics serve", catalogue)
    try:
        server = _make_server(bind, port, _guarded(registry))
    except OSError as exc:
        runtime.info(f"error: cannot listen on {bind}:{port}: {exc.strerror or exc}")
        raise typer.Exit(1) from None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    worker = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    worker.start()
    host, bound = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{host}]" if ":" in host else host
    runtime.info(f"serving http://{shown}:{bound}/metrics (SIGTERM or Ctrl-C stops)")
    while not stop.wait(1.0):
        pass
    server.shutdown()
    server.server_close()
    runtime.info("stopped")


@metrics_app.command("write")
def write(
    textfile: Annotated[
        Path,
        typer.Option(
            "--textfile", help="File to replace atomically, e.g. for node_exporter (*.prom)."
        ),
    ],
    catalogue: CatalogueOpt = None,
    home: HomeOpt = None,
) -> None:
    """Write the metrics once, in the text format, replacing the file atomically.

    For node_exporter's textfile collector; run it every minute. The file is readable by
    everyone (mode 0644): node_exporter runs as another user. Keep the directory private if
    the secrets' names are.

    Example: secrets metrics write --textfile /var/lib/prometheus/node-exporter/secrets.prom
    """
    from prometheus_client import generate_latest

    registry = _authorized_registry(home, "metrics write", catalogue)
    if textfile.suffix != ".prom":
        runtime.info("warning: node_exporter's textfile collector reads only *.prom files")
    # Collect first: collecting catches up views.sqlite, which must keep the ledger's private
    # modes. Only the finished exposition is made readable by node_exporter's user.
    exposition = generate_latest(registry)
    try:
        _write_atomically(textfile, exposition, mode=0o644)
    except OSError as exc:
        runtime.info(f"error: cannot write {textfile}: {exc.strerror or exc}")
        raise typer.Exit(1) from None
    runtime.info(f"wrote {textfile}")


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Readers (node_exporter) see the old file or the new one, never half of one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@metrics_app.command("rules")
def rules() -> None:
    """Print the Prometheus alert rules (install them where prometheus.yml's rule_files point).

    Example: secrets metrics rules > /etc/prometheus/rules/secrets-ledger-rules.yml
    """
    from projections.rules import alert_rules_text

    sys.stdout.write(alert_rules_text())
