"""``graft studio``: graft's whole workflow in a local browser page (see :mod:`graft.studio.app`).

Example:
    >>> from graft.studio import create_studio_app
    >>> callable(create_studio_app)
    True
"""

from graft.studio.app import create_studio_app

__all__ = ["create_studio_app"]
