"""Public entry of the simulator: ``simulate(SimConfig(...)) -> World`` (see :mod:`liveshelf.data.sim`)."""

from liveshelf.data.sim import GroundTruth, SimConfig, TruthParams, World, simulate

__all__ = ["GroundTruth", "SimConfig", "TruthParams", "World", "simulate"]
