"""Generated from protos/synesthesia/v1 by `make protos`. Do not edit."""
