"""The Model Context Protocol endpoint (/mcp): every installed plugin tool, for AI agents."""

from hiagent_host.api.mcp.server import McpEndpoint

__all__ = ["McpEndpoint"]
