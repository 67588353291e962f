"""The one shape of fastconv's errors about a file or folder: which one, and what is wrong."""
import os

__all__ = ["PathError"]


class PathError(ValueError):
    """A file or folder fastconv cannot use.

    Subclasses say which kind (a data file, a model file, an image, a save folder), so that
    callers catch exactly what they can explain; all carry the same two attributes.

    Attributes
    ----------
    path : str
        The offending file or folder.
    problem : str
        What is wrong with it, in one sentence.
    """

    # Text before the path in the message (e.g. "save folder "); empty for a file.
    what = ""

    def __init__(self, path, problem):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.what}{self.path}: {problem}")
