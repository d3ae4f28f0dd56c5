"""Orchestration: workflows."""
