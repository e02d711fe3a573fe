"""Seed stage: human-written first-turn (instruction, output) pairs from the bundled set, oasst1 or any pairs table."""

from humpback.seed.build import SeedResult, build_seed, decontaminate, split_heldout
from humpback.seed.config import SeedConfig, SeedSource

__all__ = ["SeedConfig", "SeedResult", "SeedSource", "build_seed", "decontaminate", "split_heldout"]
