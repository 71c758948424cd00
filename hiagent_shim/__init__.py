"""hiagent_shim: the stdlib-only process serving one package's plugins over JSON-RPC on stdio."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
