"""Data: offline sources, synthetic degradation, training samples."""
