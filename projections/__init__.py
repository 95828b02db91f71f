"""What events become: the decision state and the core DuckDB projection (current state,
version chains, audit), the vector and keyword indexes, and the reads over them."""
