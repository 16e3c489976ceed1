"""The model registry: names -> builder functions returning Functional tf_keras models."""

import importlib
import inspect

# name -> "module:function"; modules are imported only when a model is built, so listing
# names never imports TensorFlow.
_BUILDERS = {
    "mobilenet_v1": "mobilecls.models.mobilenet_v1:mobilenet_v1",
    "mobilenet_v2": "mobilecls.models.mobilenet_v2:mobilenet_v2",
    "mobilenet_v3_large": "mobilecls.models.mobilenet_v3:mobilenet_v3_large",
    "mobilenet_v3_small": "mobilecls.models.mobilenet_v3:mobilenet_v3_small",
    "shufflenet_v1": "mobilecls.models.shufflenet_v1:shufflenet_v1",
    "shufflenet_v2": "mobilecls.models.shufflenet_v2:shufflenet_v2",
}


def list_models():
    """Names of every registered model, sorted."""
    return sorted(_BUILDERS)


def get_builder(name):
    """The builder function registered as ``name``.

    Raises:
        ValueError: ``name`` is not registered (the message lists the names that are).
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; expected one of: {', '.join(list_models())}")
    module, function = _BUILDERS[name].split(":")
    return getattr(importlib.import_module(module), function)


def builder_defaults(name):
    """The keywords of ``name``'s builder with their defaults, read from its source (no TensorFlow).

    The model modules import TensorFlow, so this parses the builder's signature with ``ast``
    instead of importing it (the zoo index needs the defaults and must stay quick).

    Raises:
        ValueError: ``name`` is not registered.
    """
    import ast
    import importlib.util

    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; expected one of: {', '.join(list_models())}")
    module, function = _BUILDERS[name].split(":")
    with open(importlib.util.find_spec(module).origin, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
    arguments = node.args.args[len(node.args.args) - len(node.args.defaults):]
    return {arg.arg: ast.literal_eval(default) for arg, default in zip(arguments, node.args.defaults, strict=True)}


def build_model(name, **kwargs):
    """Build the registered model ``name`` as a new Functional tf_keras model.

    Args:
        name: one of ``list_models()``.
        **kwargs: the builder's keywords: ``width``, ``input_size``, ``num_classes``,
            ``dropout`` and the family's own (``separable``, ``groups``, ``shuffle``).

    Raises:
        ValueError: unknown model name or keyword, or an invalid value.
    """
    builder = get_builder(name)
    accepted = inspect.signature(builder).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"{name} does not accept {', '.join(unknown)}; "
                         f"its keywords are: {', '.join(accepted)}")
    return builder(**kwargs)
