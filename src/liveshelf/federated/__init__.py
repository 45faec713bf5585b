"""Federated training with Flower: clients (merchants, regions) train one model without pooling events.

- :mod:`~liveshelf.federated.partition`: which client holds which users (iid, category, user-region);
- :mod:`~liveshelf.federated.clientdata`: each client's own folder and the public item catalogue;
- :mod:`~liveshelf.federated.client`: the Flower client (local epochs, FedProx term, local validation);
- :mod:`~liveshelf.federated.privacy`: client-level DP noise and the ε spent;
- :mod:`~liveshelf.federated.run`: the Flower server, strategies, SecAgg+ and the simulation;
- :mod:`~liveshelf.federated.job`: the ``liveshelf federated train`` job (results.json, plots, registry).
"""

import os

# Flower reads this when it is first imported: no usage pings to flower.ai, no ~/.flwr/source written
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
