"""What the training job raises for bad input or a failed export.

Kept apart from the modules that raise them so that the command line can catch them without importing
torch: every `modelserve` command starts there, `serve` included, and torch alone takes 2-3 s to import.
"""


class DataError(ValueError):
    """User data that cannot be trained on; the message names file, column and row."""


class ParityError(RuntimeError):
    """An exported model disagrees with the eager model beyond the tolerance."""


class TrainingDiverged(RuntimeError):
    """The loss or the validation metrics stopped being finite numbers; nothing is saved."""
