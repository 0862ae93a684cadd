"""Benchmarks and evaluation (`appliance bench ...`, `appliance emotion-eval`): not used by the
daemon."""
