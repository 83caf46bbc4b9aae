"""Evaluation of a trained representation: downstream transfer (linear probe, fine-tune)."""
