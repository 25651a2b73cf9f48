"""Reading images: decoding, folder walks, transforms and batched loading.

Attributes load lazily (the batched loader needs PyTorch; walking folders does not).

Example:
    >>> from graft.data import IMAGE_EXTENSIONS
    >>> ".webp" in IMAGE_EXTENSIONS
    True
"""

from typing import TYPE_CHECKING

import lazy_loader

__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "files": ["CollectedImages", "collect_images", "walk_folder"],
        "images": ["IMAGE_EXTENSIONS", "load_image", "to_rgb"],
        "loading": ["Batch", "iter_batches"],
        "transforms": ["eval_transform"],
    },
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "Batch",
    "CollectedImages",
    "collect_images",
    "eval_transform",
    "iter_batches",
    "load_image",
    "to_rgb",
    "walk_folder",
]

if TYPE_CHECKING:
    from graft.data.files import CollectedImages, collect_images, walk_folder
    from graft.data.images import IMAGE_EXTENSIONS, load_image, to_rgb
    from graft.data.loading import Batch, iter_batches
    from graft.data.transforms import eval_transform
