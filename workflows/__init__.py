"""Deterministic orchestration only. ALL_WORKFLOWS is what the worker and the tests register."""

ALL_WORKFLOWS: list[type] = []
