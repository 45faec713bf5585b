"""The live-room console: a static page (``static/``) served by the app at ``/``.

The page is plain JavaScript with inline SVG charts (no build step, no network access
beyond the server it came from). It reads ``/v1/dashboard/*`` and the public
``/v1/users/{user}/...`` routes (:mod:`liveshelf.serving.routes.dashboard`).

Open ``http://127.0.0.1:8000/`` after ``liveshelf serve``. Query parameters:

* ``at`` -- replay: start the console's clock at this time (ISO 8601 or epoch seconds)
  instead of now; the clock then runs at ``speed`` times real time (default 1);
* ``key`` is never read from the URL: with API keys configured the page asks for one
  and keeps it for the browser tab only (``sessionStorage``).

:class:`BackgroundServer` runs an app with uvicorn in a thread (browser tests, screenshots).
"""

from liveshelf.dashboard.server import BackgroundServer, static_dir

__all__ = ["BackgroundServer", "static_dir"]
