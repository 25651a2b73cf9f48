"""Human-readable class names for the heads that come with pretrained weights.

ImageNet-1k names come from timm's bundled WordNet lemmas (no download). Each class is shown by
its first lemma ("tabby" for "tabby, tabby cat"); the few first lemmas that two classes share
("crane" the bird and the machine) keep their full description instead, so names stay unique.

Example:
    >>> imagenet_labels()[281]
    'tabby'
"""

from __future__ import annotations

from collections import Counter
from functools import cache

from graft.errors import ConfigError
from graft.zoo.records import BackboneRecord


@cache
def imagenet_labels() -> tuple[str, ...]:
    """Return the 1000 ImageNet-1k class names, in the standard class-index order."""
    from timm.data import ImageNetInfo

    descriptions = ImageNetInfo("imagenet-1k").label_descriptions()
    short = [text.split(",")[0].strip() for text in descriptions]
    counts = Counter(short)
    return tuple(
        name if counts[name] == 1 else full for name, full in zip(short, descriptions, strict=True)
    )


def label_names(record: BackboneRecord) -> tuple[str, ...]:
    """Return the class names of a record's head.

    Raises:
        ConfigError: The record has no head, so it cannot classify.

    Example:
        >>> from graft.zoo import get_backbone
        >>> len(label_names(get_backbone("squeezenet1_1.in1k")))
        1000
    """
    if record.num_classes == 0:
        raise ConfigError(
            f"{record.name} has no classifier head (it extracts features only); classify with "
            "a backbone that has one, e.g. efficientnet_lite0.in1k"
        )
    if record.labels == "imagenet-1k":
        return imagenet_labels()
    if isinstance(record.labels, tuple) and len(record.labels) == record.num_classes:
        return record.labels
    return tuple(f"class_{i}" for i in range(record.num_classes))
