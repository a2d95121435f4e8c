"""Compiling a run's real train step for an accelerator slice that is not there (CPU-only
machines included), and reporting whether it fits (docs/pod_scale.md)."""
