"""Metrics on generated output that torchmetrics lacks."""
