"""Pages for people: the web console at /console and the API explorer at /api/docs, served from local files."""

import os

import swagger_ui_bundle
from flask import Blueprint, abort, send_from_directory

blp = Blueprint("web", __name__)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONSOLE = os.path.join(ROOT, "bsn", "console")
# Where `npm ci` puts the official client's browser build (overridable, to show the console without it).
SOCKET_IO_CLIENT = os.environ.get("BSN_CONSOLE_VENDOR_DIR") or os.path.join(
    ROOT, "node_modules", "socket.io-client", "dist"
)

# The console runs only its own scripts; data comes from this origin (REST and Socket.IO).
CONSOLE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def _page(response):
    response.headers["Content-Security-Policy"] = CONSOLE_CSP
    response.headers["Cache-Control"] = "no-cache"
    return response


@blp.route("/console")
@blp.route("/console/")
def console():
    return _page(send_from_directory(CONSOLE, "index.html"))


@blp.route("/console/static/<path:filename>")
def console_static(filename):
    return _page(send_from_directory(CONSOLE, filename))


@blp.route("/console/vendor/socket.io.min.js")
def socket_io_client():
    """The official client, installed by `npm ci`; without it the console says what is missing."""
    if not os.path.isfile(os.path.join(SOCKET_IO_CLIENT, "socket.io.min.js")):
        abort(404)
    return _page(send_from_directory(SOCKET_IO_CLIENT, "socket.io.min.js"))


@blp.route("/api/docs/static/<path:filename>")
def swagger_static(filename):
    """Swagger UI's files, from the swagger-ui-bundle package: the explorer works without internet."""
    return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename)
