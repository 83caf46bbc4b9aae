"""Benchmarks: timing of the train steps, the teacher forward and the input pipeline."""
