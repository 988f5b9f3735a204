"""Tools around the engine: gradient checking and speed measurement."""
