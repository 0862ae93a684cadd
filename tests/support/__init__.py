"""Test helpers shared by the tests, the sample data and the drills (not part of the product)."""
