"""Workflows: one module per event type, plus the steps they share."""
