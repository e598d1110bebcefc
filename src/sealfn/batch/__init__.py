"""Distributed batch inference over function instances with collectives (issue 7)."""
