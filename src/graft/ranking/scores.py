"""Transferability scores: how well features will serve a labelled target set, without training.

Each takes features ``N x D`` of the target's *training* images and their labels; larger is
better for all of them.

* :func:`logme` (You et al., ICML 2021): the log marginal likelihood (evidence) of the labels
  under Bayesian linear regression on the features, per image, averaged over one-vs-rest label
  columns, with the prior and noise precisions set by evidence maximisation.
* :func:`h_score` (Bao et al., 2019; shrinkage form of Ibrahim et al., 2022): how much of the
  features' variance lies between class means, ``tr(cov(f)^-1 cov(E[f | y]))``.
* :func:`knn_accuracy`: leave-one-out accuracy of a cosine k-nearest-neighbour classifier.
* :func:`linear_cv_accuracy`: 5-fold cross-validated accuracy of a logistic-regression probe.
* :func:`leep` (Nguyen et al., ICML 2020) and :func:`nce` (Tran et al., ICCV 2019): from the
  source model's ImageNet probabilities, how predictable the target labels are from the source
  labels (backbones with an ImageNet head only).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> labels = np.repeat([0, 1], 50)
    >>> signal = labels[:, None] + 0.3 * rng.standard_normal((100, 8))
    >>> noise = rng.standard_normal((100, 8))
    >>> logme(signal, labels) > logme(noise, labels)
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graft.errors import DataError


@dataclass(frozen=True)
class Evidence:
    """LogME's result for one label column: evidence per image and the fitted precisions."""

    evidence: float
    alpha: float
    beta: float


def _labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes, codes = np.unique(np.asarray(labels), return_inverse=True)
    if len(classes) < 2:
        raise DataError("transferability needs at least two classes among the training images")
    return classes, codes


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME: mean evidence per image over the one-vs-rest label columns (higher is better)."""
    f = np.asarray(features, dtype=np.float64)
    classes, codes = _labels(labels)
    eigenvalues, eigenvectors = np.linalg.eigh(f.T @ f)
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    evidences = [
        evidence_of(f, (codes == k).astype(np.float64), eigenvalues, eigenvectors).evidence
        for k in range(len(classes))
    ]
    return float(np.mean(evidences))


def evidence_of(
    f: np.ndarray,
    y: np.ndarray,
    eigenvalues: np.ndarray,
    eigenvectors: np.ndarray,
    *,
    iterations: int = 100,
    tolerance: float = 1e-4,
) -> Evidence:
    """Maximise the evidence of ``y`` over the prior precision alpha and noise precision beta.

    The fixed-point updates of MacKay (1992) as LogME uses them, on the eigen-decomposition of
    ``F^T F`` (computed once per feature set): gamma = sum(beta s / (alpha + beta s)),
    alpha = gamma / |m|^2, beta = (N - gamma) / |y - F m|^2.
    """
    n, d = f.shape
    projected = eigenvectors.T @ (f.T @ y)  # V^T F^T y
    alpha, beta = 1.0, 1.0
    for _ in range(iterations):
        weights = beta / (alpha + beta * eigenvalues)
        m = eigenvectors @ (weights * projected)
        gamma = float((beta * eigenvalues / (alpha + beta * eigenvalues)).sum())
        residual = float(((y - f @ m) ** 2).sum())
        new_alpha = gamma / max(float(m @ m), 1e-12)
        new_beta = (n - gamma) / max(residual, 1e-12)
        converged = abs(new_alpha / new_beta - alpha / beta) <= tolerance * (alpha / beta)
        alpha, beta = new_alpha, new_beta
        if converged:
            break
    weights = beta / (alpha + beta * eigenvalues)
    m = eigenvectors @ (weights * projected)
    residual = float(((y - f @ m) ** 2).sum())
    evidence = (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - 0.5 * np.log(alpha + beta * eigenvalues).sum()
        - beta / 2 * residual
        - alpha / 2 * float(m @ m)
        - n / 2 * np.log(2 * np.pi)
    )
    return Evidence(float(evidence / n), alpha, beta)


def h_score(features: np.ndarray, labels: np.ndarray) -> float:
    """H-score with a Ledoit-Wolf shrunk feature covariance (stable when D is near N)."""
    from sklearn.covariance import LedoitWolf

    f = np.asarray(features, dtype=np.float64)
    _, codes = _labels(labels)
    centred = f - f.mean(axis=0)
    covariance = LedoitWolf(assume_centered=True).fit(centred).covariance_
    class_means = np.stack([centred[codes == k].mean(axis=0) for k in np.unique(codes)])
    per_image = class_means[codes]  # E[f | y] for every image
    between = per_image.T @ per_image / len(f)
    return float(np.trace(np.linalg.solve(covariance, between)))


def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Leave-one-out accuracy of a cosine k-NN vote (each image's own vote left out)."""
    _, codes = _labels(labels)
    f = np.asarray(features, dtype=np.float64)
    unit = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    k = min(k, len(f) - 1)
    neighbours = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    votes = np.zeros((len(f), codes.max() + 1))
    np.add.at(votes, (np.repeat(np.arange(len(f)), k), codes[neighbours].ravel()), 1.0)
    return float((votes.argmax(axis=1) == codes).mean())


def linear_cv_accuracy(
    features: np.ndarray, labels: np.ndarray, *, folds: int = 5, seed: int = 0
) -> float:
    """Stratified k-fold accuracy of standardised logistic regression (C = 0.1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _, codes = _labels(labels)
    smallest = int(np.bincount(codes).min())
    splitter = StratifiedKFold(
        n_splits=max(2, min(folds, smallest)), shuffle=True, random_state=seed
    )
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))
    return float(cross_val_score(probe, features, codes, cv=splitter).mean())


def leep(source_probabilities: np.ndarray, labels: np.ndarray) -> float:
    """LEEP: mean log-likelihood of the labels under the empirical P(y | source label) mix."""
    theta = np.asarray(source_probabilities, dtype=np.float64)
    _, codes = _labels(labels)
    joint = np.stack([theta[codes == k].sum(axis=0) for k in range(codes.max() + 1)]) / len(theta)
    conditional = joint / np.maximum(joint.sum(axis=0, keepdims=True), 1e-12)  # P(y | z)
    likelihood = (theta @ conditional.T)[np.arange(len(theta)), codes]
    return float(np.log(np.maximum(likelihood, 1e-12)).mean())


def nce(source_probabilities: np.ndarray, labels: np.ndarray) -> float:
    """NCE: minus the conditional entropy H(Y | Z) of target labels given hard source labels."""
    _, codes = _labels(labels)
    source = np.asarray(source_probabilities).argmax(axis=1)
    _, z = np.unique(source, return_inverse=True)
    joint = np.zeros((codes.max() + 1, z.max() + 1))
    np.add.at(joint, (codes, z), 1.0)
    joint /= joint.sum()
    marginal = joint.sum(axis=0, keepdims=True)
    mask = joint > 0
    return float((joint[mask] * np.log((joint / marginal)[mask])).sum())
