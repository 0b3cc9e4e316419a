"""Shared plumbing: database, errors, audit log, time."""
