"""The code's layers point one way, by folder: base (errors, atomic writes, shapes, progress,
metrics, wording) < contract, data < models, media < runtime < tasks, exporters, benchmarks,
serving < cli. This walks every import of the package (top of file and inside functions) with
``ast``, following setup.py's package-dir mapping, and fails on a module outside those folders,
an import from a higher layer or a cycle, naming them."""
import ast
from pathlib import Path

from helpers import ROOT, modules

# The layers, bottom to top, by folder; a module imports only from its own layer or below.
LAYERS = {"base": 0, "contract": 1, "data": 1, "models": 2, "media": 2, "runtime": 3,
          "tasks": 4, "exporters": 4, "benchmarks": 4, "serving": 4, "cli": 5}
# fcn_deploy's own top-level modules: the base. Anything else lives in a folder of LAYERS.
BASE = {"fcn_deploy", "fcn_deploy.errors", "fcn_deploy.atomic", "fcn_deploy.shapes",
        "fcn_deploy.progress", "fcn_deploy.metrics", "fcn_deploy.wording"}


def layer(module: str) -> str:
    if module in BASE:
        return "base"
    folder = module.split(".")[1]
    assert folder in LAYERS, f"{module} lies outside the layers' folders ({', '.join(LAYERS)})"
    return folder


def test_every_module_sits_in_a_layer():
    for name in modules():
        layer(name)


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported fcn_deploy module, line) for every import in the file."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            # "from pkg import mod" imports the submodule when there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        found += [(t, node.lineno) for t in targets if t.split(".")[0] == "fcn_deploy"]
    return found


def graph() -> dict[str, list[tuple[str, int]]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def test_no_module_imports_from_a_higher_layer():
    upward = [f"{src}:{line} ({layer(src)}) imports {dst} ({layer(dst)})"
              for src, edges in graph().items() for dst, line in edges
              if LAYERS[layer(dst)] > LAYERS[layer(src)]]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycles():
    edges = {src: sorted({dst for dst, _ in e if dst != src}) for src, e in graph().items()}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in edges.get(node, []):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_imports_inside_functions_say_why():
    """An import inside a function keeps something optional or slow out of the module's own
    import (torch, onnx, ray, matplotlib, cuda-python, numpy for the CLI's --help): it says
    which, in a comment on its line; anything else belongs at the top of the file."""
    silent = []
    for name, path in modules().items():
        lines = path.read_text().splitlines()
        for fn in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and \
                        "#" not in lines[node.lineno - 1]:
                    silent.append(f"{path.relative_to(ROOT)}:{node.lineno}: "
                                  f"{lines[node.lineno - 1].strip()}")
    assert not silent, "function-level imports without a reason:\n" + "\n".join(silent)
