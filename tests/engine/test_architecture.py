"""Layering rules that keep the engine usable from scripts and the CLI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path


def test_engine_imports_no_qt_and_no_gui():
    code = (
        "import sys, engine, engine.cli, engine.evaluation.bench, engine.evaluation.suite\n"
        "import engine.evaluation.synthetic\n"
        "import captum.attr\n"
        "engine.evaluation.suite._plot({}, 'deletion')  # matplotlib, through its Agg canvas only\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'gui'))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"engine pulled in: {done.stdout} {done.stderr}"


def test_gui_package_is_importable():
    import gui

    assert gui.__doc__


def test_the_app_can_show_a_window_before_torch_is_imported():
    """gui.app (splash, logging, settings) and the light engine modules must not pull torch in."""
    code = "import sys, gui.app, engine, engine.models.resources, engine.errors\nprint('torch' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stdout + done.stderr


# ---------------------------------------------------------------- layering, read from the source (AST)
ENGINE = Path(__file__).resolve().parents[2] / "engine"
#: Package -> engine packages and modules it must never import (at module level or inside a function).
FORBIDDEN = {
    "core": ("engine.results", "engine.evaluation", "engine.analysis", "engine.cli"),
    "models": ("engine.core", "engine.results", "engine.evaluation", "engine.analysis", "engine.cli"),
    "results": ("engine.evaluation", "engine.analysis", "engine.cli"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ENGINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """``(imported module, names, line)`` of every import in ``path``, relative ones made absolute."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((base, [alias.name for alias in node.names], node.lineno))
    return found


def _engine_files() -> list[Path]:
    return sorted(ENGINE.rglob("*.py"))


def test_the_layers_import_only_downwards():
    """core (the method) imports nothing from results, evaluation, analysis or the CLI; models (loading,
    preprocessing, images, resources) nothing from the method or above; results nothing from evaluation."""
    broken = []
    for path in _engine_files():
        layer = _module_name(path).split(".")[1] if "." in _module_name(path) else None
        for module, _, line in _imports(path):
            for banned in FORBIDDEN.get(layer, ()):
                if module == banned or module.startswith(banned + "."):
                    broken.append(f"{path.relative_to(ENGINE.parent)}:{line} imports {module}")
    assert not broken, "\n".join(broken)


def test_no_module_imports_a_private_name_from_another():
    broken = []
    for path in [*_engine_files(), *sorted((ENGINE.parent / "gui").rglob("*.py"))]:
        for module, names, line in _imports(path):
            private = [name for name in names if name.startswith("_") and not name.startswith("__")]
            if private and module != "__future__":
                broken.append(f"{path.relative_to(ENGINE.parent)}:{line} imports {', '.join(private)} from {module}")
    assert not broken, "\n".join(broken)


def test_the_layout_has_one_folder_per_layer():
    """A newcomer finds the defense, the export and the benchmark from the folder names."""
    assert (ENGINE / "core" / "defense.py").is_file() and (ENGINE / "core" / "fgvis.py").is_file()
    assert (ENGINE / "results" / "export.py").is_file() and (ENGINE / "evaluation" / "bench.py").is_file()
    flat = sorted(p.name for p in ENGINE.glob("*.py"))
    assert flat == ["__init__.py", "__main__.py", "cli.py", "colormaps.py", "errors.py"], flat
