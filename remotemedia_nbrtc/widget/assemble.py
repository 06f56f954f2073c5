"""Joins the widget's ES modules (``widget/js/*.js``) into the one ESM string anywidget's ``_esm`` takes.

No build step and no JavaScript tooling: the modules are plain ESM that a browser could load one by one,
and this joins them at import time. Each module becomes a function scope, run once in dependency order,
whose exports are returned as an object; its ``import { a, b } from "./x.js";`` lines become
``const { a, b } = <x's object>;``. So modules keep their own private names, and the result has no
``import`` left. The entry module's ``export default`` is the result's default export, and every module's
named exports are re-exported under their own (unique) names, so tests can import helpers from the result.

Only what the modules use is supported, and anything else is refused loudly: single-name
``export function|async function|class|const`` declarations, ``import {...} from "./x.js"`` between the
modules (no renames, no other sources), one ``export default`` in the entry, no import cycles, and no
module left unreached.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ENTRY = "widget.js"

_IMPORT = re.compile(r'^import\s*\{([^}]*)\}\s*from\s*"\./([\w-]+\.js)";[ \t]*$', re.M)
_ANY_IMPORT = re.compile(r"^\s*import\b", re.M)
_EXPORT_DECL = re.compile(r"^export\s+((?:async\s+function|function|class|const)\s+([A-Za-z_$][\w$]*))", re.M)
_ANY_EXPORT = re.compile(r"^\s*export\b", re.M)
_DEFAULT = re.compile(r"^export\s+default\s+", re.M)


class AssembleError(ValueError):
    """The modules use a form of ``import``/``export`` the assembler does not handle."""


@dataclass
class _Module:
    name: str
    imports: list[tuple[str, list[str]]]  # (module file name, imported names), in source order
    exports: list[str]
    body: str  # the source with import lines and export keywords removed
    has_default: bool


def _parse(name: str, source: str) -> _Module:
    imports: list[tuple[str, list[str]]] = []
    for match in _IMPORT.finditer(source):
        names = [n.strip() for n in match.group(1).split(",") if n.strip()]
        if not names or any(not re.fullmatch(r"[A-Za-z_$][\w$]*", n) for n in names):
            raise AssembleError(f"{name}: only `import {{ a, b }} from \"./x.js\"` is supported: {match.group(0)}")
        imports.append((match.group(2), names))
    body = _IMPORT.sub("", source)
    if stray := _ANY_IMPORT.search(body):
        line = body[stray.start() :].splitlines()[0]
        raise AssembleError(f"{name}: unsupported import: {line.strip()}")
    exports = [m.group(2) for m in _EXPORT_DECL.finditer(body)]
    body = _EXPORT_DECL.sub(r"\1", body)
    has_default = False
    if _DEFAULT.search(body):
        if name != ENTRY:
            raise AssembleError(f"{name}: only the entry module ({ENTRY}) has a default export")
        body, count = _DEFAULT.subn("const __default = ", body)
        has_default = count == 1
        if count != 1:
            raise AssembleError(f"{name}: more than one default export")
    if stray := _ANY_EXPORT.search(body):
        line = body[stray.start() :].splitlines()[0]
        raise AssembleError(f"{name}: unsupported export: {line.strip()}")
    return _Module(name, imports, exports, body.strip("\n"), has_default)


def _scope_name(module: str) -> str:
    return "__rm_" + re.sub(r"\W", "_", module.removesuffix(".js"))


def assemble(js_dir: Path, entry: str = ENTRY) -> str:
    """The ESM source made from the modules in ``js_dir``, starting at ``entry``."""
    modules = {p.name: _parse(p.name, p.read_text(encoding="utf-8")) for p in sorted(js_dir.glob("*.js"))}
    if entry not in modules:
        raise AssembleError(f"no entry module {entry} in {js_dir}")
    order: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise AssembleError("import cycle: " + " -> ".join([*visiting[visiting.index(name) :], name]))
        if name not in modules:
            raise AssembleError(f"{visiting[-1]} imports {name}, which is not in {js_dir}")
        visiting.append(name)
        for dep, names in modules[name].imports:
            visit(dep)
            missing = [n for n in names if n not in modules[dep].exports]
            if missing:
                raise AssembleError(f"{name} imports {', '.join(missing)} from {dep}, which does not export them")
        visiting.pop()
        order.append(name)

    visit(entry)
    if unreached := sorted(set(modules) - set(order)):
        raise AssembleError(f"modules no one imports (dead, or a missing import): {', '.join(unreached)}")
    if not modules[entry].has_default:
        raise AssembleError(f"{entry} has no default export")
    owner: dict[str, str] = {}
    for name in order:
        for export in modules[name].exports:
            if export in owner:
                raise AssembleError(f"{export} is exported by both {owner[export]} and {name}")
            owner[export] = name

    parts = [f"// Assembled by remotemedia_nbrtc/widget/assemble.py from widget/js/ ({len(order)} modules)."]
    for name in order:
        m = modules[name]
        lines = [f"\n// ---- {name} " + "-" * max(4, 96 - len(name))]
        lines.append(f"const {_scope_name(name)} = (() => {{")
        for dep, names in m.imports:
            lines.append(f"const {{ {', '.join(names)} }} = {_scope_name(dep)};")
        lines.append(m.body)
        returned = m.exports + (["default: __default"] if m.has_default else [])
        lines.append(f"return {{ {', '.join(returned)} }};")
        lines.append("})();")
        parts.append("\n".join(lines))
    parts.append("")
    for name in order:
        if modules[name].exports:
            parts.append(f"export const {{ {', '.join(modules[name].exports)} }} = {_scope_name(name)};")
    parts.append(f"export default {_scope_name(entry)}.default;\n")
    return "\n".join(parts)
