"""The project's exceptions that cross wings: the bottom of the package, importing nothing of it.

- :class:`ConfigError`: a config value is wrong; raised before any job, naming the key.

(A damaged result file raises :class:`diffmem.io.CorruptFileError`, beside the readers that find it.)
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value is wrong; the message names the key and what was expected."""
