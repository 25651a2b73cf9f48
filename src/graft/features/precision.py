"""The guard on reduced precision: do bf16 or int8 features still give the probe's predictions?

Before a run uses bf16 or int8 features, graft computes both those and fp32 features for a
sample of the user's own images (training split to fit, validation split to score, else a
held-out third of train, never the test split; at most ``limit`` each), fits one logistic
regression on the fp32 features of the training sample, and scores it on the fp32 and on the
reduced features of the same held-out images: the same model on the same images, so what
differs is the precision alone. It reports the cosine similarity of the feature vectors, the
share of held-out images whose prediction is unchanged, and both accuracies. If the accuracy
drops by more than the tolerance (default 1 point) the run stops with a one-line error, unless
forced. (Two probes, each fitted on its own features, differ by more than the precision does:
their fits amplify last-bit differences, by 2-3 points either way on ELPV's 200 held-out
cells, so the guard refused or passed bf16 by chance.) The run then fits its own head on the
reduced features, so a shift a refit would absorb (an int8 offset, say) is refused here: the
guard errs toward fp32. Both sets of features land in the cache, so the check costs no extra
forward pass later.

Example:
    >>> check = PrecisionCheck("int8", 0.994, 0.92, 0.993, 0.991, 400)
    >>> round(check.drop, 2)
    0.2
    >>> enforce(check, tolerance=1.0)  # within tolerance: no error
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from graft.engines.base import bf16_native, is_compiled
from graft.errors import ConfigError
from graft.features.cache import FeatureCache, default_cache_path
from graft.features.extract import FeatureSpec, calibrate, extract_features

#: Largest accepted drop in validation accuracy, in points, before a run refuses the precision.
DEFAULT_TOLERANCE = 1.0
CHECK_IMAGES = 400
#: The guard's sample under ``--precision auto`` (training + held-out images, each at most).
AUTO_CHECK_IMAGES = 200
#: Under ``auto``, fewer images to compute than this stay fp32: the check would cost more.
AUTO_MIN_IMAGES = 1000
#: Under ``auto``, fewer held-out images than this for the check keep fp32: on a handful of
#: images (a 5-shot training split with no validation split) the check measures nothing.
AUTO_MIN_HELD = 50


@dataclass(frozen=True)
class PrecisionCheck:
    """Reduced-precision features against fp32 on the same images.

    Attributes:
        precision: ``bf16`` or ``int8``.
        cosine_mean: Mean cosine similarity to the fp32 vectors.
        cosine_min: The lowest.
        accuracy_fp32: Held-out accuracy of a probe fitted on fp32 features.
        accuracy: The same probe on the reduced-precision features of the same images.
        images: Images scored.
        agreement: Share of the held-out images the probe predicts the same on both.
    """

    precision: str
    cosine_mean: float
    cosine_min: float
    accuracy_fp32: float
    accuracy: float
    images: int
    agreement: float | None = None

    @property
    def drop(self) -> float:
        """Accuracy lost, in percentage points (negative when it improved)."""
        return 100.0 * (self.accuracy_fp32 - self.accuracy)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, stored with the run."""
        return {**asdict(self), "drop_points": round(self.drop, 3)}

    def summary(self) -> str:
        """One line for the console."""
        return (
            f"{self.precision} vs fp32 on {self.images} held-out images: cosine "
            f"{self.cosine_mean:.4f} (min {self.cosine_min:.3f}), probe accuracy "
            f"{self.accuracy:.1%} vs {self.accuracy_fp32:.1%} ({-self.drop:+.2f} points)"
            + ("" if self.agreement is None else f", same prediction on {self.agreement:.1%}")
        )


def check_precision(
    paths: Sequence[Path],
    labels: Sequence[str],
    splits: Sequence[str | None],
    hashes: Sequence[str | None],
    spec: FeatureSpec,
    *,
    engine: str = "auto",
    batch_size: int = 32,
    limit: int = CHECK_IMAGES,
    min_held: int = 0,
) -> PrecisionCheck:
    """Compare ``spec`` (bf16 or int8, calibrated) with its fp32 twin on a sample of the data:
    one probe fitted on the fp32 features, scored on both features of the held-out images.

    The training split fits, the validation split scores; without a validation split, a
    seeded two-thirds / one-third split of the training images (of every image without
    splits). Never the test split: a choice made on it would leave it no longer held out.

    Raises:
        ConfigError: Fewer than two classes in the sample, or fewer than ``min_held``
            images to score.
    """
    fit, score = _sample(list(splits), list(labels), limit, hashes)
    if len(score) < min_held:
        raise ConfigError(
            f"{len(score)} held-out images, fewer than the {min_held} it needs (a validation "
            "split, or enough training images to hold a third out)"
        )
    rows = sorted(set(fit) | set(score))
    chosen_paths = [paths[i] for i in rows]
    chosen_hashes = [hashes[i] for i in rows]
    reduced = extract_features(
        chosen_paths, spec, engine=engine, batch_size=batch_size, hashes=chosen_hashes
    )
    reference = extract_features(
        chosen_paths,
        spec.with_precision("fp32"),
        engine=engine,
        batch_size=batch_size,
        hashes=chosen_hashes,
    )
    position = {row: i for i, row in enumerate(rows)}
    ok = reduced.ok & reference.ok
    fit_rows = [position[i] for i in fit if ok[position[i]]]
    score_rows = [position[i] for i in score if ok[position[i]]]
    y = np.array([labels[i] for i in rows])
    if len(set(y[fit_rows])) < 2 or not score_rows:
        raise ConfigError(
            "the precision check needs two classes of readable training images and readable "
            f"held-out ones ({len(fit_rows)} and {len(score_rows)} of the sample decoded)"
        )
    a, b = reference.features[ok], reduced.features[ok]
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    probe = check_probe(reference.features[fit_rows], y[fit_rows])
    truth = y[score_rows]
    fp32 = probe.predict(reference.features[score_rows])
    reduced_prediction = probe.predict(reduced.features[score_rows])
    return PrecisionCheck(
        precision=spec.precision,
        cosine_mean=float(cosine.mean()),
        cosine_min=float(cosine.min()),
        accuracy_fp32=float((fp32 == truth).mean()),
        accuracy=float((reduced_prediction == truth).mean()),
        images=len(score_rows),
        agreement=float((fp32 == reduced_prediction).mean()),
    )


def guarded_spec(
    spec: FeatureSpec,
    paths: Sequence[Path],
    labels: Sequence[str],
    splits: Sequence[str | None],
    hashes: Sequence[str | None],
    *,
    engine: str = "auto",
    batch_size: int = 32,
    tolerance: float = DEFAULT_TOLERANCE,
    force: bool = False,
) -> tuple[FeatureSpec, PrecisionCheck | None]:
    """Calibrate an int8 spec on the training images, then check and enforce a reduced precision.

    fp32 specs come back unchanged, with no check.

    Raises:
        ConfigError: The precision loses more accuracy than ``tolerance`` (unless ``force``).
    """
    if spec.precision == "fp32":
        return spec, None
    if spec.precision == "int8" and spec.calibration is None:
        spec = calibrate(spec, paths, hashes, _training_paths(paths, splits))
    check = check_precision(
        paths, labels, splits, hashes, spec, engine=engine, batch_size=batch_size
    )
    enforce(check, tolerance=tolerance, force=force)
    return spec, check


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision features are computed in (what ``--precision auto`` chose), and why.

    Attributes:
        precision: The precision the features are computed in.
        reason: One clause on why.
        checks: Every guard run on the way (refused ones included).
        requested: ``auto`` or the precision asked for.
    """

    precision: str
    reason: str
    checks: tuple[PrecisionCheck, ...] = ()
    requested: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        """JSON form, stored with the run."""
        return {
            "requested": self.requested,
            "precision": self.precision,
            "reason": self.reason,
            "checks": [check.to_dict() for check in self.checks],
        }

    def summary(self) -> str:
        """One line for the console."""
        return f"precision {self.requested}: {self.precision} ({self.reason})"


def auto_precision(
    spec: FeatureSpec,
    paths: Sequence[Path],
    labels: Sequence[str],
    splits: Sequence[str | None],
    hashes: Sequence[str | None],
    *,
    engine: str = "auto",
    batch_size: int = 32,
    tolerance: float = DEFAULT_TOLERANCE,
    int8: bool = True,
) -> tuple[FeatureSpec, PrecisionChoice]:
    """Choose the fastest precision that keeps the probe's accuracy on this data.

    The candidates, fastest first: int8 when a model calibrated on these training images is
    already compiled (a ``--precision int8`` run made it; calibrating costs more than it saves
    on one folder), then bf16 where the engine computes it natively. Each must pass the guard
    (:func:`check_precision` on :data:`AUTO_CHECK_IMAGES` + as many held-out images, within
    ``tolerance`` points); fp32 is the fallback. fp32 is kept outright when its features are
    all cached already, or when fewer than :data:`AUTO_MIN_IMAGES` images need computing and
    the reduced precision has none cached (the check would cost more than it saves), or when
    fewer than :data:`AUTO_MIN_HELD` images are held out to score it (a validation split that
    small is not topped up from train).

    Args:
        spec: The fp32 spec of the features wanted.
        paths, labels, splits, hashes: The images (``None`` hashes mark unreadable ones).
        engine: The extraction engine (``auto`` or a name).
        batch_size: Images per forward pass.
        tolerance: Largest accepted probe-accuracy drop, in points.
        int8: Whether int8 is a candidate.

    Example:
        >>> choice = PrecisionChoice("fp32", "no bf16 units on this CPU")
        >>> choice.summary()
        'precision auto: fp32 (no bf16 units on this CPU)'
    """
    spec = spec.with_precision("fp32")
    known = [h for h in hashes if h is not None]
    candidates: list[FeatureSpec] = []
    if int8:
        quantized = calibrate(
            spec.with_precision("int8"), paths, hashes, _training_paths(paths, splits)
        )
        if is_compiled(engine, quantized.key, "int8"):
            candidates.append(quantized)
    native = bf16_native(engine)
    if native:
        candidates.append(spec.with_precision("bf16"))
    with FeatureCache(default_cache_path()) as cache:
        if cache.count(spec.key, known) == len(known):
            return spec, PrecisionChoice("fp32", "its features are all cached already")
        cached = {c.precision: cache.count(c.key, known) for c in candidates}
    if not candidates:
        return spec, PrecisionChoice(
            "fp32", "this CPU has no native bf16, and no int8 model is calibrated for these images"
        )
    to_compute = len(known) - max(cached.values())
    if to_compute < AUTO_MIN_IMAGES and not any(cached.values()):
        return spec, PrecisionChoice(
            "fp32",
            f"{len(known)} images: too few for "
            f"{' or '.join(c.precision for c in candidates)} to repay the accuracy check",
        )
    checks: list[PrecisionCheck] = []
    for candidate in candidates:
        try:
            check = check_precision(
                paths,
                labels,
                splits,
                hashes,
                candidate,
                engine=engine,
                batch_size=batch_size,
                limit=AUTO_CHECK_IMAGES,
                min_held=AUTO_MIN_HELD,
            )
        except ConfigError as err:  # no check possible on this data: no reduced precision
            return spec, PrecisionChoice("fp32", f"{candidate.precision} not checked: {err}")
        checks.append(check)
        if check.drop <= tolerance:
            return candidate, PrecisionChoice(
                candidate.precision, f"passed the check: {check.summary()}", tuple(checks)
            )
    refused = "; ".join(f"{c.summary()}, over the tolerance of {tolerance:g}" for c in checks)
    return spec, PrecisionChoice("fp32", f"refused {refused}", tuple(checks))


def select_precision(
    spec: FeatureSpec,
    requested: str,
    paths: Sequence[Path],
    labels: Sequence[str],
    splits: Sequence[str | None],
    hashes: Sequence[str | None],
    *,
    engine: str = "auto",
    batch_size: int = 32,
    tolerance: float = DEFAULT_TOLERANCE,
    force: bool = False,
    int8: bool = True,
) -> tuple[FeatureSpec, PrecisionChoice]:
    """The spec to extract with: :func:`auto_precision` for ``auto``, else ``spec`` at the
    requested precision through :func:`guarded_spec`.

    Raises:
        ConfigError: An explicitly requested precision fails the guard (unless ``force``).
    """
    if requested == "auto":
        return auto_precision(
            spec,
            paths,
            labels,
            splits,
            hashes,
            engine=engine,
            batch_size=batch_size,
            tolerance=tolerance,
            int8=int8,
        )
    spec, check = guarded_spec(
        spec.with_precision(requested) if requested != spec.precision else spec,
        paths,
        labels,
        splits,
        hashes,
        engine=engine,
        batch_size=batch_size,
        tolerance=tolerance,
        force=force,
    )
    reason = "asked for" if check is None else f"asked for; {check.summary()}"
    return spec, PrecisionChoice(spec.precision, reason, (check,) if check else (), requested)


def enforce(
    check: PrecisionCheck, *, tolerance: float = DEFAULT_TOLERANCE, force: bool = False
) -> None:
    """Refuse the precision if its probe accuracy dropped more than ``tolerance`` points.

    Raises:
        ConfigError: The drop exceeds the tolerance and ``force`` is false.
    """
    if check.drop > tolerance and not force:
        raise ConfigError(
            f"{check.summary()}: a drop of {check.drop:.2f} points exceeds the tolerance of "
            f"{tolerance:g}; use --precision fp32, or accept it with --force-precision (or a "
            "larger --precision-tolerance)"
        )


def _training_paths(paths: Sequence[Path], splits: Sequence[str | None]) -> list[Path]:
    """The training split's images (int8 calibrates on them), or every image without splits."""
    return [p for p, s in zip(paths, splits, strict=True) if s == "train"] or list(paths)


def _sample(
    splits: list[str | None],
    labels: list[str],
    limit: int,
    keys: Sequence[str | None] | None = None,
) -> tuple[list[int], list[int]]:
    """The rows that fit and score the check. The rows are first put in the order of ``keys``
    (content hashes), so the same images draw the same sample in whatever order a run lists
    them (a neural run lists its carved validation images after the rest of train)."""
    rng = np.random.default_rng(0)
    order = sorted(range(len(splits)), key=lambda i: (keys[i] or "", labels[i]) if keys else i)
    train = [i for i in order if splits[i] == "train"]
    held = [i for i in order if splits[i] == "val"]
    if not train or not held:
        rows = rng.permutation(train or [i for i in order if splits[i] != "test"])
        cut = (2 * len(rows)) // 3
        train, held = rows[:cut].tolist(), rows[cut:].tolist()

    def pick(rows: list[int]) -> list[int]:
        return sorted(rng.choice(rows, size=min(limit, len(rows)), replace=False).tolist())

    fit, score = pick(train), pick(held)
    if len({labels[i] for i in fit}) < 2:
        raise ConfigError("the precision check needs at least two classes among training images")
    return fit, score


def check_probe(features: np.ndarray, labels: np.ndarray) -> Any:
    """The check's probe, fitted: standardised features, logistic regression at C = 1
    (``bench/engines.py`` scores int8 and bf16 features with it too).

    Example:
        >>> x = np.array([[0.0], [0.1], [1.0], [1.1]])
        >>> check_probe(x, np.array(["a", "a", "b", "b"])).predict([[0.05], [1.05]]).tolist()
        ['a', 'b']
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(features, labels)
