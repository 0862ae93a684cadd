"""Operations: the daemon and its start order, engine loading, offline analysis and the demo,
health, metrics and systemd notification."""
