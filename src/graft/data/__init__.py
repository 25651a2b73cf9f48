"""Reading images: decoding, folder walks, transforms and batched loading.

Example:
    >>> from graft.data import IMAGE_EXTENSIONS
    >>> ".webp" in IMAGE_EXTENSIONS
    True
"""

from graft.data.files import CollectedImages, collect_images, walk_folder
from graft.data.images import IMAGE_EXTENSIONS, load_image, to_rgb
from graft.data.loading import Batch, iter_batches
from graft.data.transforms import eval_transform

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
