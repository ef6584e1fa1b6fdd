"""The three training stages and their shared loop."""
from .loop import STAGES, train_stage

__all__ = ["STAGES", "train_stage"]
