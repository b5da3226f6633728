"""Evaluation metrics: SSIM, LPIPS, Inception Score / FID / KID, and per-stage scores.

Each module computes one family of numbers from arrays; none reads files or models of the
pipeline. `mgvton_jax.eval` runs them over a test set.
"""
