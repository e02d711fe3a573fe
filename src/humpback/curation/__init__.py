"""Self-curation: the previous model rates candidate pairs (scoring.py) and the best are kept (selection.py)."""
