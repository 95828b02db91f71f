"""What an event is: envelope and payload types, the lifecycle table, the stored record,
the MemCube, and the JSON Schema generated from them."""
