"""Bridges to other training libraries (optional extras; nothing here is imported eagerly)."""
