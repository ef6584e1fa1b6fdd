"""Training package for the old-photo restoration model: ``python -m training --help``."""
