"""The one exception type for errors a user can cause; the CLI prints its message as one line."""


class DigitsError(Exception):
    """A problem with the user's input, files or environment, stated so they can fix it."""


class DataError(DigitsError):
    """MNIST files that are missing, unreadable, corrupt or cannot be downloaded."""


class CheckpointError(DigitsError):
    """A file that is not a usable digits checkpoint."""


class ImageError(DigitsError):
    """An input image that cannot be read or holds no digit (not an image, too many pixels, blank)."""
