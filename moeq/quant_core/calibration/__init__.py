"""Calibration data: text → token windows (uniform | EBSS) → per-expert routed tokens."""
