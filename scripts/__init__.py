"""Operator scripts: `python -m scripts.run` starts the platform (make run)."""
