"""Confidential training on untrusted accelerators (Tempo-style obfuscation, issue 6)."""
