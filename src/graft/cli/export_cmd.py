"""``graft export``: a run as ONNX (optionally int8) or TorchScript, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def export(
    run_dir: Path = typer.Argument(..., help="A complete run directory."),
    format: str = typer.Option("onnx", "--format", help="onnx or torchscript."),
    int8: bool = typer.Option(
        False, "--int8", help="ONNX: int8 (activations and weights, else weights alone)."
    ),
    out: Path | None = typer.Option(None, help="File to write (default in the run directory)."),
    no_check: bool = typer.Option(False, "--no-check", help="Skip the comparison with PyTorch."),
    tta: str | None = typer.Option(
        None,
        help="Test-time augmentation in the graph: none, flip or dihedral (default: the run's).",
    ),
) -> None:
    """Export the run's classifier: raw RGB uint8 pixels in, probabilities out."""
    from graft.export import export_model

    result = export_model(
        run_dir,
        format=format,  # type: ignore[arg-type]
        int8=int8,
        out=out,
        check=not no_check,
        tta=tta,
    )
    typer.echo(f"wrote {result.path} ({result.path.stat().st_size / 1e6:.1f} MB)")
    if result.quantization:
        typer.echo(int8_summary(result.quantization))
    if result.checked:
        typer.echo(
            f"checked against PyTorch on {result.checked} images: max probability difference "
            f"{result.max_difference:.2e}, top-1 agreement {result.agreement:.1%}"
        )
    if result.accuracy:
        a = result.accuracy
        typer.echo(
            f"accuracy on {int(a['images'])} evaluation images: float {a['float'] * 100:.2f} %, "
            f"int8 {a['int8'] * 100:.2f} % ({(a['int8'] - a['float']) * 100:+.2f} points)"
        )


def int8_summary(quantization: dict[str, Any]) -> str:
    """One line: which int8 way was kept, and what the way before it gave.

    Example:
        >>> line = int8_summary({"mode": "weights", "attempts": [
        ...     {"mode": "static", "agreement": 0.983, "accuracy_drop": 0.004},
        ...     {"mode": "weights", "agreement": 1.0, "accuracy_drop": 0.0}]})
        >>> line.split(" (")[1]
        'activations and weights: top-1 agreement 98.3 %, -0.40 points, refused by the check)'
    """
    q = quantization
    if q["mode"] == "static":
        return (
            f"int8 activations and weights: calibrated on {q['calibration_images']} training "
            f"images; agrees with float on {q['validation_agreement']:.1%} of the "
            f"{q['validation_images']} hardest held-out training images ({q['float_depthwise']} "
            "depthwise convolutions and the most sensitive operations kept in float)"
        )
    refused = [a for a in q.get("attempts", []) if a["mode"] != q["mode"]]
    why = "".join(
        f" (activations and weights: {a['error']})"
        if "error" in a
        else f" (activations and weights: top-1 agreement {100 * a['agreement']:.1f} %, "
        f"{-100 * a['accuracy_drop'] + 0.0:+.2f} points, refused by the check)"
        for a in refused
    )
    return f"int8 weights, float activations{why}"
