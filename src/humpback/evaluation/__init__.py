"""Evaluation: answers to eval prompts, pairwise judging, AlpacaEval-style win rates, reports."""
