"""The gateway: one entry point that chains the model services (see docs/gateway.md)."""
