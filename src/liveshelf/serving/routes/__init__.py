"""One router per resource; :func:`liveshelf.serving.app.create_app` includes them all."""

from liveshelf.serving.routes import admin, dashboard, events, experiments, feed, health, items, rooms

ROUTERS = (
    health.router,
    events.router,
    feed.router,
    rooms.router,
    items.router,
    admin.router,
    experiments.router,
    dashboard.router,
)

__all__ = ["ROUTERS"]
