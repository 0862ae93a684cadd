"""Emotion: the utterance features, the speech embedding and our ONNX model (customer only)."""
