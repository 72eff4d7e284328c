"""Enrollment: first contact (claim tokens, manufacturer IDevIDs, approvals) and EST."""
