"""nanobot-api."""
