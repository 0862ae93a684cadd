"""Speech to text: the engines (Vosk, bundled Whisper), the fitted encoder window, redaction
before anything leaves the stage, and the model installer (`python -m appliance.stt`)."""
