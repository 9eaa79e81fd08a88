"""How a shared store's database URL is shown: the one place that hides its secrets.

Every message, page, log line or record that names a store's URL goes through
:func:`shown_dsn`, so a password given in the URL (``user:secret@host``) or in its query
(``?password=…``, ``?sslpassword=…``) never reaches a terminal, a report or a log.
"""

from __future__ import annotations

from yarl import URL

#: Query parameters of a libpq URL that carry a secret.
SECRET_PARAMETERS = ("password", "sslpassword")


def shown_dsn(dsn: str) -> str:
    """``dsn`` without its password, wherever the URL holds one."""
    try:
        url = URL(dsn).with_password(None)
    except ValueError:
        return "the store"
    return str(url.without_query_params(*SECRET_PARAMETERS))
