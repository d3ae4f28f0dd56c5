"""Orchestration: connectors."""
