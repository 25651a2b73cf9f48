"""The web service: FastAPI routes, micro-batching, and the page.

Example:
    >>> from graft.serve import ServeOptions
    >>> ServeOptions().max_queue
    256
"""

from typing import TYPE_CHECKING

import lazy_loader

__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "app": ["ServeOptions", "create_app"],
        "batcher": ["MicroBatcher", "QueueFullError"],
    },
)

__all__ = ["MicroBatcher", "QueueFullError", "ServeOptions", "create_app"]

if TYPE_CHECKING:
    from graft.serve.app import ServeOptions, create_app
    from graft.serve.batcher import MicroBatcher, QueueFullError
