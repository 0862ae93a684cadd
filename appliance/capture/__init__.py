"""Capture: where audio comes from (sound devices, WAV replay), WAV reading and resampling, and
the position worker that turns a live stream into calls."""
