"""The layout of docs/architecture.md, enforced: who may import whom, and no import circles.

Every ``agent/**/*.py`` is parsed, not imported.  Every ``import agent...`` and
``from agent... import ...`` counts: at module level, inside a function, and under
``if TYPE_CHECKING:`` alike (an import that runs late is still a dependency, and a circle
through one is still a circle).  ``from agent.x import y`` is an import of the module
``agent.x.y`` when that is a module, else of ``agent.x``.

The rules:

- the table under "Packages" in docs/architecture.md says which packages each package may
  import; every module of ``agent`` falls under one row of it;
- nothing in ``agent.centre`` imports a device driver (``agent.unit.devices``);
- nothing under ``agent.unit.devices`` imports ``agent.commands`` (its exit statuses included);
- there is no import circle among the modules of ``agent``;
- only ``__init__.py``, ``__main__.py`` and ``cli.py`` sit directly in ``agent/``.

A failure names the file, the line and the rule broken, one line each.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "agent"
DOC = ROOT / "docs" / "architecture.md"
TOP_LEVEL = ("__init__.py", "__main__.py", "cli.py")
CENTRE = "agent.centre"
DEVICES = "agent.unit.devices"
COMMANDS = "agent.commands"
SIM = "agent.sim"
UNIT_SERVICE = "agent.unit.service"


# -- the import graph ----------------------------------------------------------------------

@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module of agent, dotted
    path: Path
    line: int
    how: str  # "module level", "in a function", "under TYPE_CHECKING"

    @property
    def at(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def says(self, rule: str) -> str:
        return f"{self.at} ({self.how}): {self.source} imports {self.target}: {rule}"


def _name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    package = parts[-1] == "__init__"
    if package:
        parts.pop()
    return ".".join(parts), package


@lru_cache(maxsize=1)
def modules() -> dict[str, tuple[Path, bool]]:
    """Every module of agent: dotted name -> (file, is a package)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name, package = _name(path)
        found[name] = (path, package)
    return found


def _module_of(dotted: str) -> str | None:
    """The longest prefix of ``dotted`` that is a module of agent."""
    parts = dotted.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules():
            return candidate
        parts.pop()
    return None


def _imported(node: ast.Import | ast.ImportFrom, source: str, package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = source.split(".") if package else source.split(".")[:-1]
        if node.level > 1:
            base = base[: len(base) - (node.level - 1)]
        stem = ".".join(base + ([node.module] if node.module else []))
    else:
        stem = node.module or ""
    names = []
    for alias in node.names:
        full = f"{stem}.{alias.name}"
        names.append(full if full in modules() else stem)
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return "TYPE_CHECKING" in ast.unparse(test)


@lru_cache(maxsize=1)
def imports() -> tuple[Import, ...]:
    found: list[Import] = []
    for source, (path, package) in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))

        def visit(node: ast.AST, in_function: bool, typing_only: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    how = "under TYPE_CHECKING" if typing_only else "in a function" if in_function else "module level"
                    for dotted in _imported(child, source, package):
                        if dotted != "agent" and not dotted.startswith("agent."):
                            continue
                        target = _module_of(dotted)
                        if target is not None and target != source:
                            found.append(Import(source, target, path, child.lineno, how))
                visit(child,
                      in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)),
                      typing_only or (isinstance(child, ast.If) and _is_type_checking(child.test)))

        visit(tree, False, False)
    return tuple(found)


# -- the table of docs/architecture.md -----------------------------------------------------

@dataclass(frozen=True)
class Row:
    members: tuple[str, ...]
    may_import: tuple[str, ...]
    line: int


def covers(name: str, module: str) -> bool:
    """A name covers its module and everything below it; ``agent`` covers only itself."""
    return module == name or (name != "agent" and module.startswith(name + "."))


@lru_cache(maxsize=1)
def table() -> tuple[Row, ...]:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    header = next((i for i, line in enumerate(lines) if re.match(r"\|\s*package\s*\|", line)), None)
    assert header is not None, f"{DOC.relative_to(ROOT)}: no table whose first column is 'package'"
    rows = []
    for number, line in enumerate(lines[header + 2:], start=header + 3):
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        members = tuple(re.findall(r"`(agent[\w.]*)`", cells[0]))
        may = tuple(re.findall(r"`(agent[\w.]*)`", cells[-1]))
        assert members, f"{DOC.relative_to(ROOT)}:{number}: a row without a package in its first column"
        rows.append(Row(members, may, number))
    return tuple(rows)


def row_of(module: str) -> tuple[Row, str] | None:
    """The row whose most specific member covers ``module``, and that member."""
    best: tuple[Row, str] | None = None
    for row in table():
        for member in row.members:
            if covers(member, module) and (best is None or len(member) > len(best[1])):
                best = (row, member)
    return best


def allowed(source: str, target: str) -> bool:
    """Whether the table lets ``source`` import ``target``; a module under no row may import nothing."""
    if target == "agent":  # the version, which every module may print
        return True
    found = row_of(source)
    if found is None:  # reported by test_the_table_names_real_packages_and_places_every_module
        return False
    row = found[0]
    return any(covers(name, target) for name in row.members + row.may_import)


# -- the tests -------------------------------------------------------------------------------

def test_only_the_entry_points_sit_directly_in_the_package() -> None:
    extra = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in TOP_LEVEL)
    assert not extra, "\n".join(
        f"agent/{name}:1: a module directly in agent/: rule 'only {', '.join(TOP_LEVEL)} sit directly in agent/'"
        for name in extra)


def test_the_table_names_real_packages_and_places_every_module() -> None:
    problems = []
    for row in table():
        for name in row.members + row.may_import:
            if name not in modules():
                problems.append(f"{DOC.relative_to(ROOT)}:{row.line}: {name} is not a module or package of agent")
    for module, (path, _) in modules().items():
        if row_of(module) is None:
            problems.append(f"{path.relative_to(ROOT)}:1: {module} falls under no row of the table in "
                            f"{DOC.relative_to(ROOT)}: rule 'every module belongs to one package of the table'")
    assert not problems, "\n".join(problems)


def _against_the_table() -> list[tuple[Import, str]]:
    """Every import the table does not allow, with the line that says so."""
    broken = []
    for found in imports():
        if allowed(found.source, found.target):
            continue
        placed = row_of(found.source)
        if placed is None:
            broken.append((found, found.says(
                f"rule 'every module belongs to one package of {DOC.relative_to(ROOT)}'")))
            continue
        row, member = placed
        what = ", ".join(row.members + row.may_import)
        broken.append((found, found.says(
            f"rule '{member} imports only {what}' ({DOC.relative_to(ROOT)}:{row.line})")))
    return broken


def test_each_package_imports_only_what_the_architecture_allows() -> None:
    broken = [says for _, says in _against_the_table()]
    assert not broken, "\n".join(broken)


def test_the_unit_service_imports_no_simulator() -> None:
    broken = [says for found, says in _against_the_table()
              if found.source == UNIT_SERVICE and covers(SIM, found.target)]
    assert not broken, "\n".join(broken)


def test_the_centre_imports_no_device_driver() -> None:
    broken = [found.says(f"rule 'nothing in {CENTRE} imports a device driver ({DEVICES})'")
              for found in imports() if covers(CENTRE, found.source) and covers(DEVICES, found.target)]
    assert not broken, "\n".join(broken)


def test_devices_import_no_command_nor_exit_status() -> None:
    broken = [found.says(f"rule 'nothing under {DEVICES} imports {COMMANDS} or its exit statuses'")
              for found in imports() if covers(DEVICES, found.source) and covers(COMMANDS, found.target)]
    assert not broken, "\n".join(broken)


def _circles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {name: set() for name in modules()}
    for found in imports():
        graph[found.source].add(found.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def strong(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                strong(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            strong(name)
    return components


def _one_circle(component: list[str]) -> list[Import]:
    """A closed path of imports inside one component, first module first."""
    inside = set(component)
    edges: dict[str, list[Import]] = {}
    for found in imports():
        if found.source in inside and found.target in inside:
            edges.setdefault(found.source, []).append(found)
    start = component[0]
    path: list[Import] = []
    seen: set[str] = set()

    def walk(node: str) -> bool:
        seen.add(node)
        for found in sorted(edges.get(node, []), key=lambda f: (f.target, f.line)):
            path.append(found)
            if found.target == start or (found.target not in seen and walk(found.target)):
                return True
            path.pop()
        return False

    walk(start)
    return path


def test_no_import_circles() -> None:
    report = []
    for component in _circles():
        report.append(f"import circle among {', '.join(component)}: rule 'no import circles'")
        report.extend(f"    {found.says('part of the circle')}" for found in _one_circle(component))
    assert not report, "\n".join(report)


def test_building_the_command_line_imports_no_collector_exporter_or_live_map() -> None:
    """Every command's parser is built at each start (for --help): a unit's ``blankspot run``
    must not pay for the centre's code, nor the MQTT library's import twice over."""
    import subprocess
    import sys

    probe = ("import sys; from agent.commands.main import build_parser; build_parser(); "
             "print(' '.join(sorted(m for m in sys.modules if m.startswith(('agent.centre.', 'paho')))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["agent.centre.choices", "agent.centre.coverage"]


def test_checking_a_unit_config_imports_only_the_config_code(tmp_path: Path) -> None:
    """``blankspot run --check`` (an installer's and systemd's ExecStartPre check) builds only
    the ``run`` command and reads the config: no centre, no simulator, no MQTT library, no
    buffer, uplink, service or device driver."""
    import subprocess
    import sys

    config = tmp_path / "agent.toml"
    config.write_text(f'[device]\nid = "unit-1"\n\n[buffer]\npath = "{tmp_path / "buffer.db"}"\n')
    probe = ("import sys; from agent.commands.main import main; status = main(['run', '--check', '--config', "
             f"{str(config)!r}]); print(status, ' '.join(sorted(m for m in sys.modules if m.startswith(("
             "'agent.centre', 'agent.sim', 'paho', 'gpiozero', 'agent.unit.buffer', 'agent.unit.uplink', "
             "'agent.unit.service', 'agent.unit.devices', 'agent.unit.probes')))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.splitlines()[-1].split() == ["0"], done.stdout
