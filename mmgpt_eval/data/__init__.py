"""Embedded evaluation data: procedural counting images and the dialogue probe set."""
