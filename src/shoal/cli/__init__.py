"""The command line: ``shoal fetch``, ``shoal demo``."""
