"""Scheduled jobs: the nightly batch (cron or a systemd timer)."""
