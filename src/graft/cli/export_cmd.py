"""``graft export``: a run as ONNX (optionally int8) or TorchScript, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path

import typer


def export(
    run_dir: Path = typer.Argument(..., help="A complete run directory."),
    format: str = typer.Option("onnx", "--format", help="onnx or torchscript."),
    int8: bool = typer.Option(False, "--int8", help="ONNX: int8, accuracy-controlled."),
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
        q = result.quantization
        typer.echo(
            f"int8: calibrated on {q['calibration_images']} training images; agrees with float "
            f"on {q['validation_agreement']:.1%} of the {q['validation_images']} hardest held-out "
            f"training images ({q['float_depthwise']} depthwise convolutions, "
            f"{q['float_unbounded_input']} reading an unbounded input and the most "
            "sensitive operations kept in float)"
        )
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
