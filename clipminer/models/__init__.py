"""Model builders and the checkpoint bundle."""
