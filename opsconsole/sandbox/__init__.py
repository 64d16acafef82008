"""The embedded sandbox: a deterministic simulation of the whole fleet, the default world."""
