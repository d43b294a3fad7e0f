"""Writes to accounts, organizations, invitations and keys, one topic per module."""
