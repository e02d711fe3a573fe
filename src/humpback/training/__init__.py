"""Fine-tuning for every training stage (backward model, M0, M1, M2, ...): see trainer.train_model.

The package imports nothing itself: reading the `train` params section must not load torch.
"""
