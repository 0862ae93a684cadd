"""The pipeline: orchestration of the stages (queues, threads, the single writer); rows and
payloads are built by pure functions in `records`."""
