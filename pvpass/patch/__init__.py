"""Ahead-of-time patching and the before/after view of site copies
(proofs are in pvpass/verify)."""
