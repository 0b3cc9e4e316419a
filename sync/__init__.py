"""Directory sync: every source yields records; one engine plans, guards, applies, reports."""
