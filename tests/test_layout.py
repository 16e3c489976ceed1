"""The package's layers: no import cycle between modules or between folders, also not through
imports inside functions (the lazy imports that keep `mobilecls --help` fast hide cycles from
Python, which resolves them at run time, but not from a reader following a parameter).

The graph is read from the source with ``ast``, nothing is imported: every ``import`` and
``from ... import`` statement anywhere in a module (top level, functions, methods), plus
string constants that name a module (``importlib.import_module`` targets such as the model
registry's ``"mobilecls.models.mobilenet_v1:mobilenet_v1"``).
"""

import ast
import importlib.util
import os
import re

PACKAGE = "mobilecls"
_MODULE_NAME = re.compile(rf"{PACKAGE}(\.\w+)+(:\w+)?")


def package_modules(root):
    """{module name: source path} of every module under the package folder ``root``."""
    modules = {}
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if name != "__pycache__")
        parts = [PACKAGE, *os.path.relpath(folder, root).split(os.sep)] if folder != root else [PACKAGE]
        for name in sorted(names):
            if name.endswith(".py"):
                stem = name[:-3]
                modules[".".join(parts if stem == "__init__" else [*parts, stem])] = os.path.join(folder, name)
    return modules


def _known(name, modules):
    """``name`` or its longest prefix that is a module (``pkg.module.attribute`` -> ``pkg.module``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module, path, modules):
    """The package's modules that ``module`` imports anywhere in its source, sorted."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(_known(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from ..y import z
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                found.add(candidate if candidate in modules else _known(source, modules))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_NAME.fullmatch(node.value):
            found.add(_known(node.value.split(":")[0], modules))
    found.discard(None)
    found.discard(module)
    return sorted(found)


def import_graph(root):
    """{module: [modules it imports]} for the package folder ``root``."""
    modules = package_modules(root)
    return {module: imports_of(module, path, modules) for module, path in modules.items()}


def layer_of(module):
    """The folder or top-level module a module belongs to: mobilecls.export.convert -> mobilecls.export."""
    return ".".join(module.split(".")[:2])


def layer_graph(graph):
    """{layer: [layers it imports]}, imports inside one layer left out."""
    layers = {}
    for module, targets in graph.items():
        layers.setdefault(layer_of(module), set()).update(
            layer_of(target) for target in targets if layer_of(target) != layer_of(module))
    return {layer: sorted(targets) for layer, targets in layers.items()}


def find_cycle(graph):
    """One cycle of ``graph`` as [a, b, ..., a], or None when it is acyclic."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in graph.get(node, ()):
            if state.get(target) == "open":
                return [*stack[stack.index(target):], target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def _root():
    return importlib.util.find_spec(PACKAGE).submodule_search_locations[0]


def test_the_graph_sees_imports_inside_functions_and_registry_strings(tmp_path):
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from mobilecls.sub import b\n")
    (package / "sub" / "b.py").write_text("TABLE = {'x': 'mobilecls.c:function'}\n")
    (package / "c.py").write_text("from .sub.b import TABLE\nimport mobilecls.a\n")
    graph = import_graph(str(package))
    assert graph["mobilecls.a"] == ["mobilecls.sub.b"]
    assert graph["mobilecls.sub.b"] == ["mobilecls.c"]
    assert graph["mobilecls.c"] == ["mobilecls.a", "mobilecls.sub.b"]
    assert find_cycle(graph) == ["mobilecls.a", "mobilecls.sub.b", "mobilecls.c", "mobilecls.a"]
    assert find_cycle(layer_graph(graph)) == ["mobilecls.a", "mobilecls.sub", "mobilecls.c", "mobilecls.a"]
    assert find_cycle({"x": ["y"], "y": []}) is None


def test_no_module_imports_itself_back():
    graph = import_graph(_root())
    assert len(graph) > 30  # the package was found
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_folders_form_layers_each_importing_only_from_those_below():
    layers = layer_graph(import_graph(_root()))
    cycle = find_cycle(layers)
    assert cycle is None, "layers import each other: " + " -> ".join(cycle)
