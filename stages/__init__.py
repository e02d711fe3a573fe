"""The pipeline's stage scripts, one per DVC stage; importable so tests run them in-process."""
