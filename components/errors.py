"""Typed errors that library code raises; the CLI turns each into a one-line message and exit code.

Every message names the problem and the fix, so a user never has to read a traceback.
"""


class FlexoError(Exception):
    """Base class: anything a user can cause and correct."""

    exit_code = 2


class DataError(FlexoError):
    """Input text is unusable (missing, empty, binary, wrongly encoded, oversized)."""

    exit_code = 3


class ConfigError(FlexoError):
    """An option or preset is unknown or out of range."""


class OutputExistsError(FlexoError):
    """The output directory exists and holds files; flexo never writes over them."""


class CheckpointError(FlexoError):
    """A model directory is missing, of the wrong architecture or unreadable."""

    exit_code = 4


class TrainingDiverged(FlexoError):
    """The loss became NaN or infinite; nothing is saved."""

    exit_code = 5


class GovernanceError(FlexoError):
    """A governance rule refused the action (review, release, withdrawal)."""

    exit_code = 6


class IntegrityError(FlexoError):
    """A record no longer matches what was written (an edited ledger, a checkpoint that fails)."""

    exit_code = 7
