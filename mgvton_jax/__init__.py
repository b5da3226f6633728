"""MG-VTON (multi-pose guided virtual try-on) in JAX/Flax.

    from mgvton_jax import TryOn
    result = TryOn.load("MODEL_DIR")(person=..., person_parsing=..., clothes=..., pose=...)

(`mgvton_jax.tryon`). The command-line tools are `python -m mgvton_jax.{train,eval,export,
tryon}` and `python -m mgvton_jax.data.build`.
"""

_LAZY = {"TryOn": "mgvton_jax.tryon", "TryOnResult": "mgvton_jax.tryon"}


def __getattr__(name: str):
    # Imported on first use: `import mgvton_jax.data` must not load JAX models.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mgvton_jax' has no attribute {name!r}")
