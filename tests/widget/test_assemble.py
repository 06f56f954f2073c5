"""widget/assemble.py: the widget's ES modules joined into one ESM that runs (in node) like the modules do."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from remotemedia_nbrtc.widget.assemble import AssembleError, assemble

pytestmark = pytest.mark.timeout(30)

JS_DIR = Path(__file__).parents[2] / "remotemedia_nbrtc" / "widget" / "js"


def write(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def run_node(source: str, tmp_path: Path, script: str) -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed to run the widget's JavaScript (apt-get install nodejs)", pytrace=False)
    module = tmp_path / "out.mjs"
    module.write_text(source)
    run = subprocess.run([node, "--input-type=module", "-e", script, str(module)], capture_output=True, text=True,
                         timeout=20, check=True)
    return run.stdout.strip()


def test_modules_keep_their_private_names_and_share_their_exports(tmp_path: Path) -> None:
    src = write(tmp_path, {
        "a.js": 'const secret = "a";\nexport const A = secret + "!";\nexport function twice(x) { return x + x; }\n',
        "b.js": 'import { A, twice } from "./a.js";\nconst secret = "b";\n'
                'export class B { get v() { return twice(A) + secret; } }\n',
        "widget.js": 'import { B } from "./b.js";\nimport { A } from "./a.js";\n'
                     'function render() { return new B().v + A; }\nexport default { render };\n',
    })
    out = run_node(assemble(src), tmp_path, "const m = await import(process.argv[1]);"
                   "console.log(JSON.stringify([m.default.render(), m.A, m.twice(2), typeof m.B]));")
    assert json.loads(out) == ["a!a!ba!", "a!", 4, "function"]


USES_A = 'import { x } from "./a.js";\nexport default {};\n'


@pytest.mark.parametrize(("files", "message"), [
    ({"widget.js": 'import { x } from "./gone.js";\nexport default {};\n'}, "not in"),
    ({"widget.js": 'import x from "./a.js";\nexport default {};\n', "a.js": "export const x = 1;\n"},
     "unsupported import"),
    ({"widget.js": 'import { y } from "./a.js";\nexport default {};\n', "a.js": "export const x = 1;\n"},
     "does not export"),
    ({"widget.js": USES_A, "a.js": 'import { y } from "./b.js";\nexport const x = 1;\n',
      "b.js": 'import { x } from "./a.js";\nexport const y = 1;\n'}, "cycle"),
    ({"widget.js": "export default {};\n", "a.js": "export const x = 1;\n"}, "no one imports"),
    ({"widget.js": USES_A, "a.js": "const x = 1;\nexport { x };\n"}, "unsupported export"),
    ({"widget.js": 'import { x } from "./a.js";\nexport const x = 2;\nexport default {};\n',
      "a.js": "export const x = 1;\n"}, "exported by both"),
    ({"widget.js": USES_A, "a.js": "export default 1;\nexport const x = 1;\n"}, "only the entry"),
    ({"widget.js": "export const x = 1;\n"}, "no default export"),
])
def test_forms_it_does_not_handle_are_refused(tmp_path: Path, files: dict[str, str], message: str) -> None:
    with pytest.raises(AssembleError, match=message):
        assemble(write(tmp_path, files))


def test_the_widget_modules_assemble_into_valid_esm(tmp_path: Path) -> None:
    out = run_node(assemble(JS_DIR), tmp_path, "const m = await import(process.argv[1]);"
                   "console.log(typeof m.default.render);")
    assert out == "function"


def code_only(source: str) -> str:
    """``source`` without comments and string/template literals (roughly: enough to find identifiers)."""
    return re.sub(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|`(?:\\.|[^`\\])*`', " ", source,
                  flags=re.S)


def test_each_module_imports_what_it_uses_from_the_others_and_nothing_more() -> None:
    sources = {p.name: p.read_text() for p in JS_DIR.glob("*.js")}
    top_level = {name: set(re.findall(r"^(?:export )?(?:async function|function|class|const|let) (\w+)", text, re.M))
                 for name, text in sources.items()}
    for name, text in sources.items():
        imported = {n.strip() for group in re.findall(r"^import \{([^}]*)\}", text, re.M) for n in group.split(",")}
        code = code_only(re.sub(r"^import [^\n]*", "", text, flags=re.M))
        used = set(re.findall(r"(?<![\w$.])([A-Za-z_$][\w$]*)", code))
        assert not imported - used, f"{name} imports {sorted(imported - used)} but does not use them"
        for other, names in top_level.items():
            if other != name:
                missing = {n for n in names & used if n not in imported and n not in top_level[name]}
                assert not missing, f"{name} uses {sorted(missing)} of {other} without importing them"
