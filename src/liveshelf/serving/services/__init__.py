"""The service layer under the routes: what a request does, callable in process.

Routes parse and authorise, then call one function here; a route never calls another route.
:mod:`~liveshelf.serving.services.events` ingests a batch of events (``POST /v1/events`` and the console's
simulated viewers), :mod:`~liveshelf.serving.services.rooms` answers room reads (the next item for the
audience: ``GET /v1/rooms/{room}/next-item`` and the console's room view).
"""
