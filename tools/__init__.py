"""Tools beside the library: run on a developer machine, never mounted into containers."""
