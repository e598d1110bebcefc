"""Encrypted-input inference under CKKS homomorphic encryption (issue 5)."""
