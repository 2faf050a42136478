"""The standardized training protocol: losses, presets, the trainer and the run orchestration."""
