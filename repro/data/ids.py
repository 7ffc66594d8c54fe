"""Image ids become file names (maps, segments, caches), so they are checked when a data set loads.

An id with a path separator, "..", white space or a character outside [A-Za-z0-9._-] would either
read or write outside the run directory or fail much later at the maps stage; both competitions'
ids (SIIM: dotted DICOM UIDs, RSNA: hex-and-dash patient ids) pass.
"""
from __future__ import annotations

import re

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


def check_id(image_id: str, *, where: str) -> str:
    """Return `image_id` when it is safe as a file name; otherwise raise naming `where`."""
    if not _SAFE_ID.match(image_id) or ".." in image_id or len(image_id) > 200:
        raise ValueError(f"{where}: image id {image_id!r} cannot be used as a file name; ids must be "
                         "letters, digits, '.', '_' and '-' (starting with a letter or digit, no '..')")
    return image_id
