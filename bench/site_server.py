"""The site in its own process for the benchmark: Django's WSGI application behind the threaded
WSGI server that `manage.py runserver` uses (django.core.servers.basehttp), on loopback.

    python -m bench.site_server --port 8123 [--no-local-steps]

Two differences from `runserver`, both server settings, not product code: the listen backlog is
1024 instead of runserver's 10 (a burst of 200 connections would otherwise overflow it and the
kernel's SYN retransmit would add a full second to some requests; gunicorn's default is 2048),
and requests are not logged. `--no-local-steps` sets `ai.queue.LOCAL_STEPS = False`, the
product's switch for running render_prompt/attach_page_text as ordinary activities: the naive
design on the real code path.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-local-steps", action="store_true")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    if args.no_local_steps:
        import ai.queue

        ai.queue.LOCAL_STEPS = False

    class Server(ThreadedWSGIServer):
        request_queue_size = 1024

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *log_args: Any) -> None:
            pass

    httpd = Server((args.host, args.port), QuietHandler, ipv6=False)
    httpd.set_app(get_wsgi_application())
    host, port = httpd.server_address[:2]
    print(f"READY http://{host}:{port} local_steps={not args.no_local_steps}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        httpd.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
