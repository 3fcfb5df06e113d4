"""Build hook, nothing else (the package is declared in pyproject.toml): the wheel carries the repository's
shipped model package, model/ at the top of the clone, as perceptions/_model/.

model/ stays where readers of the repository find it; whatever it holds when the wheel is built (every file but
hidden ones) is what the wheel ships, so a re-trained model needs no step here. The sdist carries model/ too
(MANIFEST.in), so a wheel built from the sdist ships the same model. An editable install copies nothing: it
reads the clone's model/ in place (`perceptions.predict.model.resolve_model_dir`).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.errors import SetupError

MODEL_SOURCE = Path(__file__).resolve().parent / "model"
MODEL_TARGET = ("perceptions", "_model")
REQUIRED = ("model.json", "model.safetensors")  # perceptions.nets.package's META_FILE and WEIGHTS_FILE


def model_files() -> list[Path]:
    missing = [name for name in REQUIRED if not (MODEL_SOURCE / name).is_file()]
    if missing:
        raise SetupError(f"{MODEL_SOURCE} holds no model package (no {', '.join(missing)}): the wheel would ship "
                         "without a model")
    return sorted(p for p in MODEL_SOURCE.iterdir() if p.is_file() and not p.name.startswith("."))


class BuildPyWithModel(build_py):
    """build_py, then model/ copied into the build as perceptions/_model/ (emptied first: no stale files)."""

    def run(self):
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib, *MODEL_TARGET)
        if target.exists():
            shutil.rmtree(target)
        self.mkpath(str(target))
        for path in model_files():
            self.copy_file(str(path), str(target / path.name))

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        if self.editable_mode:
            return outputs
        return [*outputs, *(str(Path(self.build_lib, *MODEL_TARGET, p.name)) for p in model_files())]


setup(cmdclass={"build_py": BuildPyWithModel})
