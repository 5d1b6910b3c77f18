"""The adapter: every TransformerLens call of the package goes through harness/adapter.py."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tl_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) of each TransformerLens import, bridge attribute or hand-built hook name
    (a string in code, not a docstring, that starts a ``blocks.`` hook path)."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            )
            if any(str(m).split(".")[0] == "transformer_lens" for m in modules):
                found.append((node.lineno, "imports transformer_lens"))
        elif isinstance(node, ast.Attribute) and node.attr in ("bridge", "hook_dict"):
            found.append((node.lineno, f".{node.attr}"))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("blocks.")
            and id(node) not in docstrings
        ):
            found.append((node.lineno, f"hook name {node.value!r}"))
    return found


def test_the_scan_sees_a_hand_built_hook_name():
    code = 'from transformer_lens import X\nname = f"blocks.{layer}.attn.hook_q"\nm.bridge.cfg\n'
    assert len(tl_uses(ast.parse(code))) == 3


def test_transformer_lens_is_used_only_in_the_adapter():
    outside = [
        f"{path.relative_to(REPO)}:{line}: {what}"
        for path in sorted((REPO / "harness").rglob("*.py"))
        if path.name != "adapter.py"
        for line, what in tl_uses(ast.parse(path.read_text()))
    ]
    assert not outside, "\n".join(outside)
