"""Live-commerce simulator: supply (hosts, items, rooms, shelves), demand (users, funnel), ground truth."""

from liveshelf.data.sim.truth import GroundTruth, SimConfig, TruthParams
from liveshelf.data.sim.world import World, simulate

__all__ = ["GroundTruth", "SimConfig", "TruthParams", "World", "simulate"]
