"""Marks torch as installed for the GPU suite's dry run on CPU; nothing in the suite imports it."""
