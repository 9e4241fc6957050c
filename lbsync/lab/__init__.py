"""A lab on loopback: a private nginx and stand-in nodes, for tests, the demo and benchmarks."""
