"""Self-curation: the previous model rates candidate pairs (scoring) and the best are kept (selection)."""

from humpback.curation.parse import parse_score

__all__ = ["parse_score"]
