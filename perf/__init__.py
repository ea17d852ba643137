"""Performance and correctness regression suite for BLOOM inference backends."""
