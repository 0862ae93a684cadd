"""Benchmarks and evaluation (`appliance bench ...`, `appliance emotion-eval`): not used by the
daemon."""

from pathlib import Path

#: The team's data beside the project root (`../shared/data`): benches default to it; a fresh
#: clone has none, and nothing at run time reads it.
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
