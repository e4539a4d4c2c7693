"""Command line: ``serve``, ``check-config`` and ``--version`` (CONTRACT.md)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import ssl
import sys
from collections.abc import Sequence

from aiohttp import web

from . import __version__, connections
from .app import create_app
from .cache import commands as cache_commands
from .handlers import health
from .keys import METRICS_KEY, READINESS_KEY
from .log import configure_logging, get_logger
from .settings import ConfigError, Settings, load_settings

EXIT_CONFIG = 2
DRAIN_POLL = 0.05
# After shutdown_grace, aiohttp waits this long for handlers it signalled, then cancels them.
CANCEL_TIMEOUT = 0.25


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="registry-gateway",
        description="Pull-through gateway for OCI/Docker registries.",
    )
    parser.add_argument("--version", action="version", version=f"registry-gateway {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the gateway until SIGTERM/SIGINT")
    serve.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $REGISTRY_GATEWAY_CONFIG, else the embedded default)",
    )
    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("path", metavar="PATH")
    cache_commands.add_parser(commands)
    return parser


def _print_problems(error: ConfigError) -> None:
    for problem in error.problems:
        print(problem, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        try:
            settings = load_settings(args.path)
        except ConfigError as exc:
            _print_problems(exc)
            return EXIT_CONFIG
        print(f"ok: {settings.summary()}")
        return 0
    if args.command == "cache":
        return cache_commands.run(args)
    if args.command == "serve":
        try:
            settings = load_settings(args.config)
        except ConfigError as exc:
            _print_problems(exc)
            return EXIT_CONFIG
        configure_logging(settings.log.format, settings.log.level)
        try:
            return asyncio.run(serve(settings))
        except KeyboardInterrupt:
            return 130
    _parser().print_help(sys.stderr)
    return EXIT_CONFIG


async def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT, then drain in-flight responses for up to shutdown_grace."""
    log = get_logger("gateway")
    app = create_app(settings)
    metrics = app[METRICS_KEY]
    # No sites: the listener below builds each connection's protocol itself (connections.py).
    # serve() drains for shutdown_grace itself; the runner's timeout only bounds the cancel.
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=CANCEL_TIMEOUT
    )
    await runner.setup()
    ssl_context = None
    if settings.tls is not None:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(settings.tls.cert_file, settings.tls.key_file)
    metrics_runner = None
    if settings.metrics.listen is not None:
        # The admin listener keeps answering while the main one drains, so a scraper and a
        # readiness probe pointed here see the drain (/readyz 503) instead of a refused port.
        metrics_app = web.Application()
        metrics_app[METRICS_KEY] = metrics
        metrics_app[READINESS_KEY] = app[READINESS_KEY]
        metrics_app.router.add_get(settings.metrics.path, health.metrics)
        metrics_app.router.add_get("/healthz", health.healthz)
        metrics_app.router.add_get("/readyz", health.readyz)
        metrics_runner = web.AppRunner(metrics_app, handle_signals=False, access_log=None)
        await metrics_runner.setup()
    host, port = settings.listen
    listener: asyncio.Server | None = None
    try:
        listener = await connections.listen(
            runner, host, port, settings.limits, metrics, ssl_context=ssl_context
        )
        if metrics_runner is not None and settings.metrics.listen is not None:
            mhost, mport = settings.metrics.listen
            await web.TCPSite(metrics_runner, mhost, mport).start()
    except OSError as exc:
        log.error("listen_failed", error=str(exc))
        if listener is not None:
            listener.close()
        await runner.cleanup()
        if metrics_runner:
            await metrics_runner.cleanup()
        return 1
    log.info("gateway_started", version=__version__, summary=settings.summary())

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            # A second signal: the operator wants out now.
            os._exit(128 + signum)
        app[READINESS_KEY].draining = True
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await stop.wait()
    started = loop.time()
    listener.close()  # stop accepting: new callers get "connection refused" at once
    await drain(runner, started + settings.shutdown_grace)
    # Cancels whatever outlived the grace (within 2 * CANCEL_TIMEOUT), then app cleanup.
    await runner.cleanup()
    await listener.wait_closed()
    if metrics_runner:
        await metrics_runner.cleanup()
    log.info("gateway_stopped", drained_in_s=round(loop.time() - started, 3))
    return 0


async def drain(runner: web.AppRunner, deadline: float) -> None:
    """Let responses in flight finish until ``deadline``; no connection takes a new request."""
    log = get_logger("gateway")
    loop = asyncio.get_running_loop()
    server = runner.server
    if server is None:
        return
    for connection in server.connections:
        # Idle keep-alive connections close now, busy ones after their current response.
        connection.close()
    log.info("draining", connections=len(server.connections))
    # aiohttp signals no "last connection closed" event: poll its public connection list.
    while loop.time() < deadline:
        if not server.connections:
            break
        await asyncio.sleep(DRAIN_POLL)
    if server.connections:
        log.warning("shutdown_grace_expired", cancelled_connections=len(server.connections))


if __name__ == "__main__":
    sys.exit(main())
