"""Alerts: persist verdicts into the case record, the alert workflow, and delivery."""
