"""Speaker diarization of mono channels: who speaks when, agent or customer."""
