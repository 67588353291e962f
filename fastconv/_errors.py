"""The one shape of fastconv's errors about a file or folder: which one, and what is wrong;
and which OSErrors are the machine's (a full disk, a read-only folder), not the caller's."""
import errno
import os

__all__ = ["PathError", "environmental_error", "ENVIRONMENTAL_ERRNOS"]

# OSErrors that say something about the machine (disk, quota, permissions, file table), not
# about the work asked for: the CLI says them in one line, and the experiment store does not
# record a run that meets one as failed (the sitting stops; a rerun once fixed resumes it).
ENVIRONMENTAL_ERRNOS = frozenset(getattr(errno, name) for name in (
    "ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EIO", "EMFILE", "ENFILE", "EFBIG")
    if hasattr(errno, name))


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


def environmental_error(exc):
    """The OSError about the machine (full disk, read-only or unwritable folder, quota...)
    behind ``exc`` (itself, or an exception it was raised from or while handling), or None.

    Parameters
    ----------
    exc : BaseException

    Returns
    -------
    OSError or None
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in ENVIRONMENTAL_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None
