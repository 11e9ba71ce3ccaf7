"""Exceptions with messages meant for the user (CLI prints them, the app shows them)."""


class CifarCoreError(Exception):
    """Base class: an error the user can act on; its message says what and how."""


class DataError(CifarCoreError):
    """A data set is missing, unreadable, corrupted or inconsistent."""


class UnsafePickleError(DataError):
    """A pickle asked to call something outside the allow-list; nothing was executed."""


class ImageError(CifarCoreError):
    """A file is not a usable image (not an image, truncated, too large...)."""


class ConfigError(CifarCoreError):
    """A training or CLI value is out of range; refused before any work starts."""


class BackboneWeightsError(CifarCoreError):
    """The MobileNet weights could not be downloaded or loaded."""


class RunFolderError(CifarCoreError):
    """A run folder is missing, unreadable, of another schema version, or outside the root."""


class RendererError(CifarCoreError):
    """A PDF or slide deck cannot be drawn: no browser or renderer was found or it failed.

    Its message is one line that names what to install or set (``apt-get install
    chromium``, ``pip install kaleido``), since that is all the user can do about it.
    """


class RunStopped(Exception):
    """The user asked the run to stop (SIGTERM from the app's Stop button, or Ctrl-C).

    Not a ``CifarCoreError``: a stop is not an error. Its message says where the run
    stopped ("Stopped by the user at epoch 3 of 40 (2 finished)"), one plain line for the
    log instead of a traceback.
    """
