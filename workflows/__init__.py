"""Deterministic orchestration only. The list the worker and tests register is in workflows/registry.py
(kept out of this __init__ so importing a pure module such as workflows.approval_rules stays cheap)."""
