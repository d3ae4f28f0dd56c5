"""Orchestration: events."""
