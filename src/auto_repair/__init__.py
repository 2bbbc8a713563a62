"""Lambda Auto-Repair: detect, diagnose, repair and verify memory-starved Lambda functions."""
