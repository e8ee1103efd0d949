"""varattn: latent alignment and variational attention for sequence models."""

__version__ = "0.1.0"

_API = ("load", "Model", "Translation", "Alignment", "Score")


def __getattr__(name: str):
    """``varattn.load`` and the result types come from :mod:`varattn.api` on first use, so that
    ``import varattn`` stays light (no torch)."""
    if name in _API:
        from varattn import api

        return getattr(api, name)
    raise AttributeError(f"module 'varattn' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
