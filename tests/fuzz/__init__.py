"""Fuzz over every RPC of every service: mutated images, hostile fields, invalid messages.

`python -m tests.fuzz` (what `make fuzz` runs) starts its own stack and runs
FUZZ_CASES cases; tests/fuzz/test_fuzz.py runs a quick subset under pytest.
"""
