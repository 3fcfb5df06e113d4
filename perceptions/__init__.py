"""perceptions: learn how people perceive places from street-level images."""

__version__ = "0.1.0"


def load_model(path=None, device="cpu"):
    """Load a model package (default: the shipped `model/`); see `perceptions.predict.PerceptionModel`."""
    from perceptions.predict import load_model as _load

    return _load(path, device=device)
