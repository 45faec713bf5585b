"""Scale-out jobs on Ray (install the ``scale`` extra: ``pip install 'liveshelf[scale]'``).

- :mod:`liveshelf.distributed.encode`: ``RayTextEncoder`` / ``encode_catalogue`` embed an item
  catalogue on Ray Data actors, with the same vectors, order and cache as the local ``TextEncoder``;
- :mod:`liveshelf.distributed.train`: ``fit_distributed`` and ``DDPStrategy`` train SASRec-family
  models data-parallel on Ray Train workers (DDP, gloo on CPU);
- :mod:`liveshelf.distributed.cluster`: ``ensure_ray`` joins or starts the cluster.

Commands: ``liveshelf distributed encode|train``. Where each piece runs in production:
``docs/topology.md``. Nothing here is imported by ``import liveshelf``, so Ray stays optional.

>>> from liveshelf.distributed.encode import encode_catalogue          # doctest: +SKIP
>>> vectors = encode_catalogue(item_texts, num_workers=4)               # doctest: +SKIP
"""
