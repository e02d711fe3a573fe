"""Evaluation: answers to eval prompts, pairwise judging, AlpacaEval-style win rates, reports."""

from humpback.evaluation.metrics import lc_win_rate, win_rate

__all__ = ["lc_win_rate", "win_rate"]
