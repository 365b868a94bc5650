"""Pulling sources on a schedule, recording every run, and reporting each source's health."""
