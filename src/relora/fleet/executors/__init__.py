"""Where a rollout's jobs run: local processes or a Ray cluster."""
