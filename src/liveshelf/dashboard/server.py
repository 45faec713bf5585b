"""The console's page files and a background server for browser tests and screenshot scripts.

Both live in the serving layer (:func:`liveshelf.serving.console.static_dir`,
:class:`liveshelf.serving.background.BackgroundServer`: the socket is bound before uvicorn starts, so
no other process can take the port in between); this module keeps the dashboard's import path.

>>> with BackgroundServer(create_app(settings)) as server:      # doctest: +SKIP
...     page.goto(server.url + "/")
"""

from __future__ import annotations

from liveshelf.serving.background import BackgroundServer
from liveshelf.serving.console import static_dir

__all__ = ["BackgroundServer", "static_dir"]
