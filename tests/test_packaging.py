"""The package as installed, checked without building it (.ci/wheel_check.sh builds and installs the wheel):
which model a call without a path loads (explicit > PERCEPTIONS_MODEL > the shipped one), a bad
PERCEPTIONS_MODEL as one line and exit 2, `--version`, the extras' message, and pyproject's ranges against the
lock in requirements.txt.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import perceptions
import perceptions.cli as cli
import perceptions.predict.model as model_module
from perceptions.cli import main
from perceptions.errors import PerceptionsError
from perceptions.extras import require
from perceptions.predict.model import MODEL_ENV, resolve_model_dir

REPO = Path(__file__).resolve().parents[1]
FIXTURE_IMAGES = REPO / "tests" / "fixtures" / "placepulse" / "images"


def fake_package(folder: Path) -> Path:
    """A folder that looks like a model package to the resolution (not loadable)."""
    folder.mkdir(parents=True)
    (folder / "model.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def test_resolution_order_explicit_then_env_then_shipped(tmp_path, monkeypatch):
    explicit, named, shipped = (fake_package(tmp_path / n) for n in ("explicit", "named", "shipped"))
    monkeypatch.setattr(model_module, "DEFAULT_MODEL_DIR", shipped)
    monkeypatch.delenv(MODEL_ENV, raising=False)
    assert resolve_model_dir() == shipped
    assert resolve_model_dir(explicit) == explicit
    monkeypatch.setenv(MODEL_ENV, str(named))
    assert resolve_model_dir() == named
    assert resolve_model_dir(str(explicit)) == explicit
    monkeypatch.setenv(MODEL_ENV, "")  # set but empty: as unset
    assert resolve_model_dir() == shipped


def test_shipped_model_is_the_installed_packages_else_the_clones(tmp_path, monkeypatch):
    package_dir = tmp_path / "site" / "perceptions"
    package_dir.mkdir(parents=True)
    monkeypatch.setattr(model_module, "_PACKAGE_DIR", package_dir)
    monkeypatch.setattr(model_module, "PACKAGED_MODEL_DIR", package_dir / "_model")
    monkeypatch.setattr(model_module, "CLONE_MODEL_DIR", package_dir.parent / "model")
    assert model_module._shipped_model_dir() == package_dir / "_model"  # neither: named in the error
    (package_dir.parent / "pyproject.toml").write_text("")
    assert model_module._shipped_model_dir() == package_dir.parent / "model"  # a clone
    fake_package(package_dir / "_model")
    assert model_module._shipped_model_dir() == package_dir / "_model"  # an installed wheel
    # Here, in the clone, the default is the repository's model/.
    assert model_module.DEFAULT_MODEL_DIR == REPO / "model"


def test_load_model_without_a_path_reads_the_variable(monkeypatch):
    monkeypatch.setenv(MODEL_ENV, str(REPO / "model"))
    monkeypatch.setattr(model_module, "DEFAULT_MODEL_DIR", REPO / "nowhere")
    model = perceptions.load_model()
    assert model.path == REPO / "model" and model.studies


@pytest.mark.parametrize("case, expected", [
    ("nowhere", "no such folder"),
    ("a_file", "not a folder"),
    ("empty_folder", "not a model package (no model.json or model.safetensors"),
    ("broken_json", "not valid JSON"),
])
def test_bad_model_variable_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, case, expected):
    target = tmp_path / case
    if case == "a_file":
        target.write_text("not a folder")
    elif case == "empty_folder":
        target.mkdir()
    elif case == "broken_json":
        fake_package(target)
        (target / "model.json").write_text("{nope")
    monkeypatch.setenv(MODEL_ENV, str(target))
    code = main(["predict", str(FIXTURE_IMAGES), "--out", str(tmp_path / "p.csv"), "--device", "cpu",
                 "--workers", "0", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(f"perceptions predict: error: {MODEL_ENV}={target}") and expected in err, err
    assert "\n" not in err
    assert not (tmp_path / "p.csv").exists()


def test_explicit_model_wins_over_a_bad_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_ENV, str(tmp_path / "nowhere"))
    assert resolve_model_dir(REPO / "model") == REPO / "model"


def test_version_names_the_git_revision_in_a_clone(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    line = capsys.readouterr().out.strip()
    if (REPO / ".git").exists():
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        assert line == f"perceptions {perceptions.__version__} (git {head})"
    else:
        assert line == f"perceptions {perceptions.__version__}"


def test_version_outside_a_clone_is_the_version_alone(tmp_path, monkeypatch):
    assert cli.git_revision(tmp_path) is None  # no .git: an installed package
    (tmp_path / ".git").mkdir()

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(cli.subprocess, "run", no_git)
    assert cli.git_revision(tmp_path) is None  # a clone, but no git program
    monkeypatch.setattr(cli, "git_revision", lambda root: None)
    assert cli.version_text() == f"perceptions {perceptions.__version__}"


def test_extra_missing_is_one_line_naming_it_and_the_pip_command(tmp_path, monkeypatch):
    assert require("json", "geo").dumps({}) == "{}"
    with pytest.raises(PerceptionsError) as missing:
        require("perceptions_no_such_module", "geo")
    message = str(missing.value)
    assert "'geo' extra" in message and 'pip install "perceptions[geo]"' in message and "\n" not in message
    # Installed, but broken (something it imports is missing): still one line, naming what is missing.
    (tmp_path / "half_installed.py").write_text("import perceptions_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PerceptionsError, match=r"half_installed could not be imported.*perceptions\[serve\]"):
        require("half_installed", "serve")


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            pins[req.name.lower().replace("_", "-")] = str(req.specifier).removeprefix("==")
    return pins


def test_pyproject_ranges_hold_the_locked_versions():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" in project["dynamic"] and "version" not in project
    lock = _lock()
    extras = project["optional-dependencies"]
    for line in project["dependencies"] + extras["dev"] + extras["geo"] + extras["serve"]:
        req = Requirement(line)
        locked = lock[req.name.lower()]
        assert req.specifier.contains(locked), f"{line} excludes the locked {req.name}=={locked}"
        assert any(s.operator == ">=" for s in req.specifier), f"{line}: no tested lower bound"


def test_lock_installs_cuda_wheels_on_linux_only():
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if re.match(r"(nvidia-|cuda-|triton)", line):
            marker = Requirement(line).marker
            assert marker is not None, line
            assert marker.evaluate({"sys_platform": "linux", "platform_machine": "x86_64"}), line
            assert not marker.evaluate({"sys_platform": "darwin", "platform_machine": "arm64"}), line
            assert not marker.evaluate({"sys_platform": "win32", "platform_machine": "AMD64"}), line


def test_extras_module_sits_in_the_base_layer():
    layers = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    assert any("perceptions.extras" in layer.split(" | ") for layer in layers)
    assert sys.modules["perceptions.extras"].require is require
