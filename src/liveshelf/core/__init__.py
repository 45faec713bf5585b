"""The bottom layer: small pieces every other package may use, and which import nothing of ours above.

- :mod:`liveshelf.core.timeutil` — timestamps to float epoch seconds and back (one implementation);
- :mod:`liveshelf.core.jsonsafe` — values made JSON-safe (numpy scalars, NaN, paths);
- :mod:`liveshelf.core.files` — atomic writes (temporary file in the same folder + ``os.replace``);
- :mod:`liveshelf.core.catalog` — category-path prefixes and the ``attributes`` JSON column;
- :mod:`liveshelf.core.traindata` — ``TrainData`` and ``Context``, what every model is fitted and scored on;
- :mod:`liveshelf.core.trainer` — the one training loop (callbacks: early stopping, schedules, NaN guard,
  progress; strategies: accumulation / autocast, DP-SGD, data-parallel);
- :mod:`liveshelf.core.seeding` — ``seed_everything``.

The root modules :mod:`liveshelf.config`, :mod:`liveshelf.errors`, :mod:`liveshelf.names` and
:mod:`liveshelf.schema` sit in the same layer (the import-linter contract in ``pyproject.toml``).
"""
