"""Writes to billing state, one topic per module. Views, tasks and the admin call these."""
