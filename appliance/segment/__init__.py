"""Segmentation: voice activity per channel, cutting a stream into utterances per speaker."""
