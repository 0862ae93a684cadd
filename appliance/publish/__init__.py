"""Publishing: the MQTT contract and its schemas, the one publishing path, pseudonyms and the
one command path (MQTT and panel)."""
