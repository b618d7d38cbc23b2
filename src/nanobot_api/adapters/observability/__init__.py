"""What an operator sees of a running server: log lines, metrics, traces."""
