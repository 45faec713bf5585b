"""Ingest, store and shape data: readers, validation, the event store, timelines, the simulator."""
