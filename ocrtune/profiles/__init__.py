"""Shipped run-config profiles."""
