"""humpback: instruction backtranslation (Li et al., arXiv 2308.06259) as a DVC pipeline."""

__version__ = "0.1.0"
