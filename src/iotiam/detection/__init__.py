"""Behavioural detection: events, baselines, detectors and the findings they raise."""
