"""Inception Score, FID and KID from network outputs, and per-stage segmentation scores.

All in float64 NumPy/SciPy; the networks that produce the inputs live in `inception`.
"""

from __future__ import annotations

import numpy as np


def inception_score(probabilities: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Salimans et al.'s IS of (N, K) class probabilities: mean and std over `splits`.

    Contiguous splits with boundaries i * N // splits (improved-gan's order); per split
    exp(mean KL(p(y|x) || p(y))), p(y) the split's marginal. Std is the population std.
    """
    p = np.asarray(probabilities, np.float64)
    n = len(p)
    if n < splits:
        raise ValueError(f"{n} images cannot make {splits} splits")
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        marginal = part.mean(axis=0, keepdims=True)
        # 0 log 0 = 0: classes a row gives no probability add nothing.
        terms = np.where(part > 0, part * (np.log(np.where(part > 0, part, 1.0))
                                            - np.log(np.where(marginal > 0, marginal, 1.0))), 0)
        scores.append(np.exp(terms.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def softmax64(logits: np.ndarray) -> np.ndarray:
    """Row softmax of (N, K) logits in float64."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID of two (N, D) feature sets: |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)).

    Covariances are (N - 1)-normalised, in float64. Tr (S_a S_b)^(1/2) is the sum of the
    square roots of the eigenvalues of S_a^(1/2) S_b S_a^(1/2), a symmetric matrix with the
    same eigenvalues: the number pytorch-fid gets from scipy's sqrtm, but stable when the
    covariances are singular (N < D) and several times faster for D = 2048.
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("FID needs at least 2 images per set")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b)
                 - 2 * np.sqrt(np.clip(cross, 0, None)).sum())


def kernel_inception_distance(features_a: np.ndarray, features_b: np.ndarray,
                              subsets: int = 100, subset_size: int = 1000, seed: int = 0
                              ) -> tuple[float, float]:
    """KID: unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, mean and std over random subsets
    of min(subset_size, N_a, N_b) rows of each set (torch-fidelity's defaults)."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError("KID needs at least 2 images per set")
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        k_xx, k_yy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3
        k_xy = (x @ y.T / d + 1) ** 3
        off_diagonal = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        values.append(off_diagonal - 2 * k_xy.mean())
    return float(np.mean(values)), float(np.std(values))


def label_iou(confusion: np.ndarray) -> np.ndarray:
    """(K,) IoU of each label of a (K, K) confusion matrix (rows truth, columns prediction);
    NaN for a label in neither."""
    confusion = np.asarray(confusion, np.float64)
    true_positive = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, true_positive / union, np.nan)


def segmentation_scores(confusion: np.ndarray) -> dict[str, float]:
    """Pixel accuracy and mean IoU over the labels present in truth or prediction."""
    confusion = np.asarray(confusion, np.float64)
    iou = label_iou(confusion)
    present = ~np.isnan(iou)
    return {"pixel_accuracy": float(np.diag(confusion).sum() / confusion.sum()),
            "mean_iou": float(iou[present].mean()),
            "labels_present": int(present.sum())}
