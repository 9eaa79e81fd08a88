"""The version of shoal (``pyproject.toml`` reads it from here: one place to change).

A literal rather than a lookup in the installed package's metadata: that lookup costs
every start of the command line several milliseconds.
"""

__version__ = "0.1.0"
