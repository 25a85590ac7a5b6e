"""The one exception type for problems a user can cause (bad files, bad configs, bad manifests).

The CLI prints such an error as a single line and exits non-zero; anything else is a bug and
keeps its traceback.
"""


class ASRError(Exception):
    """A user-caused problem; the message names the file (and line) and what is wrong."""
