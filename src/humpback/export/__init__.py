"""Exports a user can publish: the final curated set and the last model's training mixture as a
Hugging Face dataset folder, and a model card for every trained model (stage `export`)."""
