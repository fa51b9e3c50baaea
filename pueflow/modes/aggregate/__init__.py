"""Aggregate mode: the second stage that builds fleet rows from the consumers' KPI topic."""
