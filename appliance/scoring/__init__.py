"""Scoring: fusion of emotion and text, call metrics, text sentiment, alert rules and the
relationship across calls. Pure logic: no I/O, no threads."""
