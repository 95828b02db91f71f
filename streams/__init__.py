"""How events move: the embedded log, sealing under per-subject keys, and the drivers that
run the projectors (embedded; Kafka with Faust workers)."""
