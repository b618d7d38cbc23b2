"""Adapters for tools: JSON Schema checks of their arguments, MCP servers."""
