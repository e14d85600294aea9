"""The sandbox templates run in, and rendering them: a :class:`TemplateError` for any failure.

The environment is jinja2's immutable sandbox with ``StrictUndefined``, and three additions:

- every render has a budget of time, output and value sizes (:mod:`dsl.template_limits`): the
  sandbox's hooks (attributes, items, calls, the operators ``* ** % +``, ``~``, loop iterations,
  list literals) spend it and refuse what would be too big before it is made;
- templates are read only from inside the templates directory: a file (or a link in it) that
  resolves outside is refused, never read (:class:`TemplatesOnlyLoader`);
- ``mapping.x`` means the key ``x`` before any method, so a partner field called ``items`` is
  the field.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import stat
import sys
import traceback
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jinja2 import DictLoader, FileSystemLoader, StrictUndefined, exceptions, nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.loaders import split_template_path
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment

from . import template_limits as limits

TEMPLATE_NAMES = ("partner", "campaign", "step", "now", "today", "unsubscribe_url", "preferences_url")

_ESCAPED_SUFFIXES = (".html", ".htm", ".xml")
_TEMPLATE_SUFFIXES = (".j2", ".jinja", ".jinja2")


class TemplateError(Exception):
    """A template could not be rendered; the message is one line, fit for a step's failure reason."""


class TemplateOutsideDirectory(exceptions.TemplateError):
    """A template name that resolves (through a symbolic link) outside the templates directory."""

    def __init__(self, name: str) -> None:
        super().__init__(f"template '{name}' resolves outside templates/ (a link?): refused, not read")
        self.name = name


# --- Files -------------------------------------------------------------------------------------


def inside(path: str | Path, directory: str | Path) -> bool:
    """Whether ``path``, links followed, is in ``directory`` (links followed too)."""
    real = os.path.realpath(path)
    root = os.path.realpath(directory)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


class TemplatesOnlyLoader(FileSystemLoader):
    """jinja's file loader, except that a template must resolve inside the templates directory:
    a symbolic link in templates/ to ``/etc/passwd`` or to another workspace is refused before
    it is opened (the file opened is the resolved one, so a link swapped meanwhile cannot slip
    through)."""

    def __init__(self, directory: str) -> None:
        super().__init__(directory)
        self.directory = directory

    def get_source(self, environment: Any, template: str) -> tuple[str, str, Callable[[], bool]]:
        filename = posixpath.join(self.directory, *split_template_path(template))
        if not os.path.isfile(filename):
            raise exceptions.TemplateNotFound(template)
        real = os.path.realpath(filename)
        if not inside(real, self.directory):
            raise TemplateOutsideDirectory(template)
        with open(real, encoding=self.encoding) as f:
            contents = f.read()
        seen = _identity(filename)

        def uptodate() -> bool:
            """One ``lstat`` (jinja asks at every render): a file replaced by a link, or a link
            pointed elsewhere, is read again, and checked again."""
            try:
                return _identity(filename) == seen
            except OSError:
                return False

        return contents, os.path.normpath(filename), uptodate


def _identity(filename: str) -> tuple[int, int, int]:
    link = os.lstat(filename)
    target = os.stat(filename) if stat.S_ISLNK(link.st_mode) else link
    return link.st_ino, link.st_mtime_ns, target.st_mtime_ns


# --- Environment -------------------------------------------------------------------------------


class _BudgetedCodeGenerator(CodeGenerator):
    """jinja's compiler, with hooks where a template can loop or build values without calling
    anything the sandbox sees: loop iterations, ``~`` and list, tuple and dict literals."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop_items: set[int] = set()  # ids of the ``iter`` nodes of ``{% for %}`` loops

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        self._loop_items.add(id(node.iter))
        super().visit_For(node, frame)

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        """A loop's items pass through ``budgeted_loop`` (jinja allows no node types of ours)."""
        if id(node) not in self._loop_items:
            return super().visit(node, *args, **kwargs)
        self.write("environment.budgeted_loop(")
        super().visit(node, *args, **kwargs)
        self.write(")")
        return None

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            escape = "context.eval_ctx.autoescape"
        else:
            escape = "True" if frame.eval_ctx.autoescape else "False"
        self.write(f"environment.joined({escape}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self._weighed(super().visit_List, node, frame)

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        self._weighed(super().visit_Tuple, node, frame)

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self._weighed(super().visit_Dict, node, frame)

    def _weighed(self, visit: Callable[[Any, Frame], None], node: Any, frame: Frame) -> None:
        """``[ns.l, ns.l]`` doubles a value's printed size without any operator: literals that
        are not constants are weighed when made."""
        if getattr(node, "ctx", "load") != "load" or _constant(node, frame):
            visit(node, frame)
            return
        self.write("environment.checked_literal(")
        visit(node, frame)
        self.write(")")


def _constant(node: nodes.Expr, frame: Frame) -> bool:
    try:
        node.as_const(frame.eval_ctx)
    except nodes.Impossible:
        return False
    return True


_current_budget = limits.current_budget
_METHODS = (types.MethodType, types.BuiltinMethodType)


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with ``mapping.x`` meaning the key ``x`` before any method of the mapping,
    so that a partner field called ``items`` or ``values`` is the field; and with the hooks of
    the render budget (:mod:`dsl.template_limits`)."""

    code_generator_class = _BudgetedCodeGenerator
    intercepted_binops = limits.INTERCEPTED_BINOPS
    concat = staticmethod(limits.bounded_join)  # the output of renders, macros and blocks
    budgeted_loop = staticmethod(limits.budgeted_loop)
    joined = staticmethod(limits.joined)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.globals["range"] = limits.bounded_range
        self.globals["lipsum"] = limits.bounded_lipsum(self.globals["lipsum"])
        self.globals["namespace"] = limits.BoundedNamespace
        self.filters = limits.bounded_filters(self.filters)

    def _parse(self, source: str, name: str | None, filename: str | None) -> Any:
        """jinja reads a number literal with ``int()``, which refuses more than 4,300 digits
        with a ValueError: here that is the template's syntax error, at the number's line, for
        every way in (parse, from_string, includes), as any other mistake in the text is."""
        try:
            return super()._parse(source, name, filename)
        except ValueError:
            long_number = re.search(r"\d{%d,}" % (sys.get_int_max_str_digits() + 1), source)
            line = source.count("\n", 0, long_number.start()) + 1 if long_number else 1
            raise exceptions.TemplateSyntaxError(
                f"a number of more than {sys.get_int_max_str_digits():,} digits", line, name, filename) from None

    def getattr(self, obj: Any, attribute: str) -> Any:
        budget = _current_budget()  # limits.spend(), inlined: the most frequent hook
        if budget is not None:
            budget.left -= 1
            if budget.left <= 0:
                budget.check_clock()
        if isinstance(obj, Mapping) and isinstance(attribute, str):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        limits.spend()
        return super().getitem(obj, argument)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        limits.spend()
        args = limits.check_method_call(obj, args, kwargs)
        result = super().call(context, obj, *args, **kwargs)
        return limits.checked(result, f"{getattr(obj, '__name__', 'call')}()")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        limits.spend()
        return limits.binop(operator, left, right)

    @staticmethod
    def checked_literal(value: Any) -> Any:
        return limits.checked(value, f"a {type(value).__name__} literal")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` and ``format_map`` with :class:`~dsl.template_limits.BoundedFormatter`
        (jinja's sandboxed formatter, and no field wider than a value may be)."""
        if type(value) not in _METHODS or value.__name__ not in ("format", "format_map"):
            return None  # the common case, without jinja's own (slower) test
        if super().wrap_str_format(value) is None:
            return None
        text = value.__self__
        is_format_map = value.__name__ == "format_map"

        def format_within_budget(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                args, kwargs = (), args[0]
            if isinstance(text, limits.Markup):
                formatter: Any = limits.BoundedEscapeFormatter(self, escape=text.escape)
            else:
                formatter = limits.BoundedFormatter(self)
            return type(text)(formatter.vformat(text, args, kwargs))

        return functools.update_wrapper(format_within_budget, value)

    def make_globals(self, d: Any = None) -> dict[str, Any]:
        """A template's globals as a plain dict rather than jinja's ChainMap over the
        environment's: every render copies them into a fresh context, and copying a ChainMap
        costs more than the rest of rendering a short template. Nothing changes the
        environment's globals after it is made (:func:`_cached_environment`)."""
        return {**self.globals, **(d or {})}


def _autoescape(name: str | None) -> bool:
    """HTML and XML files are escaped, also when named ``welcome.html.j2``; inline strings,
    text and SMS templates are not."""
    if not name:
        return False
    name = name.lower()
    for suffix in _TEMPLATE_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.endswith(_ESCAPED_SUFFIXES)


def _finalize(value: Any) -> Any:
    """A field that is null prints as nothing, not as 'None'; a list is weighed before it is
    turned into text (its printed size may be far more than its size in memory)."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, limits.CONTAINERS):
        return limits.checked(value, "printing a value")
    return value


def directory_key(templates_dir: str | Path | None) -> str | None:
    return None if templates_dir is None else _resolved(str(templates_dir))


@functools.lru_cache(maxsize=64)
def _resolved(directory: str) -> str:
    """Resolving a path asks the file system each time; rendering asks once per message."""
    return str(Path(directory).resolve())


@functools.lru_cache(maxsize=32)
def cached_environment(directory: str | None) -> SandboxedEnvironment:
    return _Sandbox(
        loader=TemplatesOnlyLoader(directory) if directory is not None else DictLoader({}),
        undefined=StrictUndefined,
        autoescape=_autoescape,
        keep_trailing_newline=True,
        finalize=_finalize,
    )


def environment(templates_dir: str | Path | None = None) -> SandboxedEnvironment:
    """The sandboxed environment for a templates directory (one per directory, reused)."""
    return cached_environment(directory_key(templates_dir))


# --- Rendering ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _inline_template(directory: str | None, text: str) -> Any:
    """Inline templates are compiled once, not once per partner."""
    return cached_environment(directory).from_string(text)


def render_inline(text: str, variables: Mapping[str, Any], templates_dir: str | Path | None = None) -> str:
    """Render a template written in a campaign string; any failure is a :class:`TemplateError`."""
    pieces = plain_pieces(text)
    if pieces is not None:
        rendered = _render_plain(pieces, variables)
        if rendered is not None:
            if len(rendered) > limits.MAX_OUTPUT:
                raise TemplateError(_failure(limits.RenderBudgetExceeded(
                    f"output over {limits.MAX_OUTPUT:,} characters"), "inline template", None))
            return rendered
    directory = directory_key(templates_dir)
    return _render(lambda: _inline_template(directory, text), variables, "inline template", directory)


@functools.lru_cache(maxsize=1024)
def plain_pieces(text: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]] | None:
    """A template made only of text and ``{{ name.field }}`` (``Hello {{ partner.name }}``,
    the common subject line) as its texts (as jinja's parser leaves them) and the (name,
    field) printed between them. None for any other template (or one that does not parse)."""
    try:
        tree = cached_environment(None).parse(text)
    except exceptions.TemplateSyntaxError:
        return None
    texts, refs = [""], []
    for node in tree.body:
        if not isinstance(node, nodes.Output):
            return None
        for item in node.nodes:
            if isinstance(item, nodes.TemplateData):
                texts[-1] += item.data
            elif isinstance(item, nodes.Getattr) and isinstance(item.node, nodes.Name) and item.node.ctx == "load":
                refs.append((item.node.name, item.attr))
                texts.append("")
            else:
                return None
    return tuple(texts), tuple(refs)


def _render_plain(pieces: tuple[tuple[str, ...], tuple[tuple[str, str], ...]], variables: Mapping[str, Any]) -> str | None:
    """What jinja renders for such a template when each ``name`` is a dict holding ``field``:
    the texts, and each value through :func:`_finalize` and ``str`` (inline templates are not
    escaped). None for anything else (a missing field, a method, an undefined name, a value
    that cannot be printed): jinja then renders it, or says what is wrong, itself."""
    texts, refs = pieces
    out = [texts[0]]
    for (name, field), text in zip(refs, texts[1:]):
        record = variables.get(name)
        if type(record) is not dict or field not in record:
            return None
        value = record[field]
        if type(value) is not str:
            try:
                value = str(_finalize(value))
            except Exception:
                return None
        out += (value, text)
    return "".join(out)


def render_file(name: str, variables: Mapping[str, Any], templates_dir: str | Path) -> str:
    """Render ``templates/<name>``; any failure is a :class:`TemplateError`."""
    directory = directory_key(templates_dir)
    env = cached_environment(directory)
    return _render(lambda: env.get_template(name), variables, f"template '{name}'", directory)


def _render(load: Callable[[], Any], variables: Mapping[str, Any], label: str, directory: str | None) -> str:
    budget = limits.start_budget()
    try:
        return load().render(dict(variables))
    except RecursionError:
        raise TemplateError(f"{label}: nested too deeply") from None
    except Exception as exc:  # whatever a template does wrong, the step fails with a reason
        raise TemplateError(_failure(exc, label, directory)) from exc
    finally:
        limits.end_budget(budget)


def _failure(exc: Exception, label: str, directory: str | None) -> str:
    """``template 'x.html', line 3: reason`` naming the innermost template that failed."""
    line = getattr(exc, "lineno", None) if isinstance(exc, exceptions.TemplateSyntaxError) else None
    if isinstance(exc, exceptions.TemplateSyntaxError) and exc.name:
        label = f"template '{exc.name}'"
    if line is None:
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename == "<template>":
                line = frame.lineno
            elif directory is not None and frame.filename.startswith(directory + os.sep):
                label, line = f"template '{frame.filename[len(directory) + 1:]}'", frame.lineno
    if isinstance(exc, exceptions.TemplateNotFound):
        reason = f"template '{exc.name}' not found"
        if label == f"template '{exc.name}'":
            return reason
    elif isinstance(exc, TemplateOutsideDirectory):
        if label == f"template '{exc.name}'":
            return str(exc)
        reason = str(exc)
    elif isinstance(exc, exceptions.TemplateSyntaxError):
        reason = f"syntax error: {exc.message}"
    elif isinstance(exc, (exceptions.UndefinedError, exceptions.SecurityError, limits.RenderBudgetExceeded)):
        reason = str(exc)
    else:
        reason = f"{type(exc).__name__}: {exc}"
    where = f"{label}, line {line}" if line else label
    return " ".join(f"{where}: {reason}".split())
