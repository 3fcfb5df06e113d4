"""perceptions: learn how people perceive places from street-level images."""

from perceptions.version import __version__

__all__ = ["__version__", "load_model"]


def load_model(path=None, device="cpu"):
    """Load a model package (default: the shipped `model/`); see `perceptions.predict.model.PerceptionModel`.
    Imported on first use, so `import perceptions` stays light (no torch)."""
    from perceptions.predict.model import load_model as _load

    return _load(path, device=device)
