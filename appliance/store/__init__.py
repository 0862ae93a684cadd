"""Storage: the SQLite schema and connection, the single writer, the outbox, the key-value
settings and retention. The one place SQL is written (besides the panel's read queries)."""
