"""Response to findings: their lifecycle, playbooks, mitigations, alerts and trust scores."""
