"""Every format and mode decodes to correct RGB; every bad file gets one clear line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from graft.data import load_image
from graft.errors import DataError

FORMATS = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "BMP": ".bmp",
    "GIF": ".gif",
    "WEBP": ".webp",
    "TIFF": ".tif",
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_format_decodes_to_rgb(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"red{FORMATS[fmt]}"
    Image.new("RGB", (20, 10), (200, 30, 30)).save(path, format=fmt)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (20, 10)
    red, green, blue = image.getpixel((10, 5))
    assert red > 150 and green < 80 and blue < 80


def test_uppercase_extension(tmp_path: Path) -> None:
    path = tmp_path / "PHOTO.JPEG"
    Image.new("RGB", (8, 8), (0, 0, 255)).save(path, format="JPEG")
    assert load_image(path).getpixel((4, 4))[2] > 200


def test_grayscale(tmp_path: Path) -> None:
    path = tmp_path / "gray.png"
    Image.new("L", (4, 4), 100).save(path)
    assert load_image(path).getpixel((0, 0)) == (100, 100, 100)


def test_palette_with_transparency_becomes_white(tmp_path: Path) -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((1, 1), 1)
    path = tmp_path / "palette.png"
    image.save(path, transparency=0)
    decoded = load_image(path)
    assert decoded.getpixel((0, 0)) == (255, 255, 255)
    assert decoded.getpixel((1, 1)) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_white(tmp_path: Path, mode: str) -> None:
    image = Image.new(mode, (4, 4), (0, 0) if mode == "LA" else (0, 0, 0, 0))
    image.putpixel((2, 2), (50, 255) if mode == "LA" else (10, 20, 30, 255))
    path = tmp_path / f"alpha_{mode}.png"
    image.save(path)
    decoded = load_image(path)
    assert decoded.getpixel((0, 0)) == (255, 255, 255)
    assert decoded.getpixel((2, 2)) == ((50, 50, 50) if mode == "LA" else (10, 20, 30))


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    decoded = np.asarray(load_image(path))[0, :, 0]
    assert decoded.tolist() == [0, 128, 255]


def test_float_tiff(tmp_path: Path) -> None:
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F").save(path)
    assert np.asarray(load_image(path))[0, :, 0].tolist() == [0, 128, 255]


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(path)  # pure red in CMYK
    red, green, blue = load_image(path).getpixel((4, 4))
    assert red > 200 and green < 60 and blue < 60


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (6, 6), color) for color in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    red, _, blue = load_image(path).getpixel((3, 3))
    assert red > 200 and blue < 50


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 10, 20))  # white stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    decoded = load_image(path)
    assert decoded.size == (20, 40)
    assert decoded.getpixel((10, 2))[0] > 200  # the stripe is now at the top
    assert decoded.getpixel((10, 37))[0] < 50


def test_jpeg_draft_keeps_the_requested_size(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    Image.new("RGB", (2000, 1500), (10, 200, 10)).save(path)
    decoded = load_image(path, draft_size=256)
    assert min(decoded.size) >= 256 and decoded.size[0] < 2000


def test_truncated_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    Image.effect_noise((64, 64), 50).convert("RGB").save(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match=r"cut\.jpg: truncated or corrupt image data"):
        load_image(path)


def test_text_file_with_image_extension(tmp_path: Path) -> None:
    path = tmp_path / "fake.png"
    path.write_text("this is not a picture")
    with pytest.raises(DataError, match=r"fake\.png: not a readable image \(supported: JPEG"):
        load_image(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.jpg: not a readable image"):
        load_image(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no such file"):
        load_image(tmp_path / "nope.jpg")


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"is a folder"):
        load_image(tmp_path)


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    Image.new("L", (300, 300)).save(path)
    with pytest.raises(DataError, match=r"300x300 = 90,000 pixels exceeds the limit of 1,000"):
        load_image(path, max_pixels=1000)


def test_pixel_limit_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    Image.new("L", (100, 100)).save(path)
    monkeypatch.setenv("GRAFT_MAX_PIXELS", "5000")
    with pytest.raises(DataError, match=r"GRAFT_MAX_PIXELS"):
        load_image(path)
    monkeypatch.setenv("GRAFT_MAX_PIXELS", "20000")
    assert load_image(path).size == (100, 100)


def test_pixel_limit_setting_is_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from graft.errors import ConfigError

    path = tmp_path / "x.png"
    Image.new("L", (2, 2)).save(path)
    monkeypatch.setenv("GRAFT_MAX_PIXELS", "lots")
    with pytest.raises(ConfigError, match=r"GRAFT_MAX_PIXELS='lots' is not a positive whole"):
        load_image(path)
