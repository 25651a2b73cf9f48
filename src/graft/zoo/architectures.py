"""The timm architectures graft lists by name, usable with random or user-supplied weights.

Any timm architecture works with graft (``--backbone`` takes every name ``timm.list_models()``
knows); these are the ones ``graft backbones`` lists, because they are the ones the transfer
learning literature compares: the seeds' VGG16/19, ResNet50, InceptionV3, Xception, MobileNets,
DenseNet121 and NASNet, and the modern EfficientNets, ConvNeXts, RegNets and ViTs.

Parameter counts (with timm's default 1000-class head) and pooled feature widths are stored here
so that listing needs no model construction; the contract test in
``tests/zoo/test_contract.py`` builds every one of them and checks both figures.

Example:
    >>> ARCHITECTURES["resnet50"].feature_dim
    2048
"""

from __future__ import annotations

from typing import NamedTuple


class ArchitectureInfo(NamedTuple):
    """Static facts about one architecture (checked by the contract test)."""

    params: int
    feature_dim: int
    family: str


ARCHITECTURES: dict[str, ArchitectureInfo] = {
    "vgg11": ArchitectureInfo(132_863_336, 4096, "VGG (Simonyan & Zisserman 2014)"),
    "vgg16": ArchitectureInfo(138_357_544, 4096, "VGG (Simonyan & Zisserman 2014)"),
    "vgg19": ArchitectureInfo(143_667_240, 4096, "VGG (Simonyan & Zisserman 2014)"),
    "vgg16_bn": ArchitectureInfo(138_365_992, 4096, "VGG (Simonyan & Zisserman 2014)"),
    "resnet18": ArchitectureInfo(11_689_512, 512, "ResNet (He et al. 2015)"),
    "resnet34": ArchitectureInfo(21_797_672, 512, "ResNet (He et al. 2015)"),
    "resnet50": ArchitectureInfo(25_557_032, 2048, "ResNet (He et al. 2015)"),
    "resnet101": ArchitectureInfo(44_549_160, 2048, "ResNet (He et al. 2015)"),
    "resnet152": ArchitectureInfo(60_192_808, 2048, "ResNet (He et al. 2015)"),
    "resnext50_32x4d": ArchitectureInfo(25_028_904, 2048, "ResNeXt (Xie et al. 2017)"),
    "wide_resnet50_2": ArchitectureInfo(
        68_883_240, 2048, "Wide ResNet (Zagoruyko & Komodakis 2016)"
    ),
    "inception_v3": ArchitectureInfo(23_834_568, 2048, "Inception v3 (Szegedy et al. 2015)"),
    "inception_v4": ArchitectureInfo(42_679_816, 1536, "Inception v4 (Szegedy et al. 2016)"),
    "inception_resnet_v2": ArchitectureInfo(
        55_843_464, 1536, "Inception-ResNet v2 (Szegedy et al. 2016)"
    ),
    "legacy_xception": ArchitectureInfo(
        22_855_952, 2048, "Xception (Chollet 2017), the Keras original"
    ),
    "xception41": ArchitectureInfo(26_969_560, 2048, "Aligned Xception-41 (Chen et al. 2018)"),
    "densenet121": ArchitectureInfo(7_978_856, 1024, "DenseNet (Huang et al. 2017)"),
    "densenet169": ArchitectureInfo(14_149_480, 1664, "DenseNet (Huang et al. 2017)"),
    "densenet201": ArchitectureInfo(20_013_928, 1920, "DenseNet (Huang et al. 2017)"),
    "nasnetalarge": ArchitectureInfo(88_753_150, 4032, "NASNet-A Large (Zoph et al. 2018)"),
    "pnasnet5large": ArchitectureInfo(86_057_668, 4320, "PNASNet-5 Large (Liu et al. 2018)"),
    "mobilenetv2_100": ArchitectureInfo(3_504_872, 1280, "MobileNetV2 (Sandler et al. 2018)"),
    "mobilenetv2_140": ArchitectureInfo(6_108_776, 1792, "MobileNetV2 (Sandler et al. 2018)"),
    "mobilenetv3_large_100": ArchitectureInfo(5_483_032, 1280, "MobileNetV3 (Howard et al. 2019)"),
    "mobilenetv3_small_100": ArchitectureInfo(2_542_856, 1024, "MobileNetV3 (Howard et al. 2019)"),
    "mnasnet_100": ArchitectureInfo(4_383_312, 1280, "MnasNet (Tan et al. 2019)"),
    "ghostnet_100": ArchitectureInfo(5_182_508, 1280, "GhostNet (Han et al. 2020)"),
    "efficientnet_b0": ArchitectureInfo(5_288_548, 1280, "EfficientNet (Tan & Le 2019)"),
    "efficientnet_b1": ArchitectureInfo(7_794_184, 1280, "EfficientNet (Tan & Le 2019)"),
    "efficientnet_b2": ArchitectureInfo(9_109_994, 1408, "EfficientNet (Tan & Le 2019)"),
    "efficientnet_b3": ArchitectureInfo(12_233_232, 1536, "EfficientNet (Tan & Le 2019)"),
    "efficientnet_b4": ArchitectureInfo(19_341_616, 1792, "EfficientNet (Tan & Le 2019)"),
    "efficientnet_b5": ArchitectureInfo(30_389_784, 2048, "EfficientNet (Tan & Le 2019)"),
    "efficientnet_b6": ArchitectureInfo(43_040_704, 2304, "EfficientNet (Tan & Le 2019)"),
    "efficientnet_b7": ArchitectureInfo(66_347_960, 2560, "EfficientNet (Tan & Le 2019)"),
    "tf_efficientnet_lite3": ArchitectureInfo(
        8_197_096, 1280, "EfficientNet-Lite, TF-compatible padding"
    ),
    "tf_efficientnet_lite4": ArchitectureInfo(
        13_006_568, 1280, "EfficientNet-Lite, TF-compatible padding"
    ),
    "tf_efficientnetv2_s": ArchitectureInfo(21_458_488, 1280, "EfficientNetV2 (Tan & Le 2021)"),
    "convnext_tiny": ArchitectureInfo(28_589_128, 768, "ConvNeXt (Liu et al. 2022)"),
    "convnext_small": ArchitectureInfo(50_223_688, 768, "ConvNeXt (Liu et al. 2022)"),
    "convnext_base": ArchitectureInfo(88_591_464, 1024, "ConvNeXt (Liu et al. 2022)"),
    "regnetx_016": ArchitectureInfo(9_190_136, 912, "RegNet (Radosavovic et al. 2020)"),
    "regnety_016": ArchitectureInfo(11_202_430, 888, "RegNet (Radosavovic et al. 2020)"),
    "regnety_040": ArchitectureInfo(20_646_656, 1088, "RegNet (Radosavovic et al. 2020)"),
    "vit_tiny_patch16_224": ArchitectureInfo(
        5_717_416, 192, "Vision Transformer (Dosovitskiy et al. 2021)"
    ),
    "vit_small_patch16_224": ArchitectureInfo(
        22_050_664, 384, "Vision Transformer (Dosovitskiy et al. 2021)"
    ),
    "vit_base_patch16_224": ArchitectureInfo(
        86_567_656, 768, "Vision Transformer (Dosovitskiy et al. 2021)"
    ),
    "deit_small_patch16_224": ArchitectureInfo(22_050_664, 384, "DeiT (Touvron et al. 2021)"),
    "swin_tiny_patch4_window7_224": ArchitectureInfo(
        28_288_354, 768, "Swin Transformer (Liu et al. 2021)"
    ),
    "mobilevit_s": ArchitectureInfo(5_578_632, 640, "MobileViT (Mehta & Rastegari 2022)"),
}
