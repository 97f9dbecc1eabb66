"""Export a bundle and verify it offline; tampered bundles, pinned keys and the state file."""

from __future__ import annotations

import ast
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import audit
from audit.checkpoint import public_key_pem
from audit.log import AuditLog
from audit.verify import BundleError, main, verify_bundle, verify_bundle_file

from .conftest import append_n


def _bundle(log: AuditLog, prove: tuple[int, ...] = ()) -> dict[str, Any]:
    buf = io.StringIO()
    log.export_bundle(buf, prove=prove)
    return json.loads(buf.getvalue())


def test_bundle_verifies_offline(filled: AuditLog) -> None:
    bundle = _bundle(filled, prove=(1, 8, 20))
    assert len(bundle["entries"]) == 20 and len(bundle["checkpoints"]) == 2
    assert {(p["size1"], p["size2"]) for p in bundle["consistency_proofs"]} == {(8, 20)}
    report = verify_bundle(bundle)
    assert report.ok, report.summary()
    assert any("entry 8 is included" in n for n in report.notes)


@pytest.mark.parametrize(
    ("mutate", "kind", "seq"),
    [
        (lambda b: b["entries"][4].update(actor="mallory"), "edited", 5),
        (lambda b: b["entries"].pop(6), "missing", 7),
        (lambda b: b["entries"].__setitem__(slice(2, 4), b["entries"][3:1:-1]), "missing", 3),
        (lambda b: b["entries"].__delitem__(slice(15, None)), "truncated", 16),
        (lambda b: b["entries"][1]["detail"].update(extra=1), "edited", 2),
        (
            lambda b: b["checkpoints"][0].update(
                note=b["checkpoints"][0]["note"].replace("\n8\n", "\n9\n")
            ),
            "checkpoint",
            None,
        ),
        (lambda b: b["consistency_proofs"][0]["proof"].reverse(), "proof", None),
        (lambda b: b["inclusion_proofs"][0]["proof"].__setitem__(0, "00" * 32), "proof", 8),
    ],
)
def test_tampered_bundle_is_rejected(filled: AuditLog, mutate, kind: str, seq: int | None) -> None:
    bundle = _bundle(filled, prove=(8,))
    mutate(bundle)
    report = verify_bundle(bundle)
    assert not report.ok
    assert report.problem.kind == kind
    if seq is not None:
        assert report.problem.seq == seq


def test_pinned_key_must_match(filled: AuditLog) -> None:
    bundle = _bundle(filled)
    with pytest.raises(BundleError, match="different public key"):
        verify_bundle(bundle, public_key=Ed25519PrivateKey.generate().public_key())
    # A bundle re-signed under the attacker's own key is refused once the key is pinned.
    bundle["public_key_pem"] = public_key_pem(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(BundleError):
        verify_bundle(bundle, public_key=filled.public_key)


def test_state_file_requires_consistency_with_the_last_accepted(
    filled: AuditLog, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    first = tmp_path / "b1.json"
    first.write_text(json.dumps(_bundle(filled)))
    assert verify_bundle_file(first, state_file=state).ok
    assert json.loads(state.read_text())["size"] == 20

    append_n(filled, 5, start=100)
    filled.checkpoint()
    second = tmp_path / "b2.json"
    bundle = _bundle(filled)
    second.write_text(json.dumps(bundle))
    report = verify_bundle_file(second, state_file=state)
    assert report.ok, report.summary()
    assert json.loads(state.read_text())["size"] == 25

    # Without the proof from the accepted size, the next bundle is refused.
    bundle["consistency_proofs"] = [p for p in bundle["consistency_proofs"] if p["size1"] != 25]
    append_n(filled, 1, start=200)
    filled.checkpoint()
    third = _bundle(filled)
    third["consistency_proofs"] = [p for p in third["consistency_proofs"] if p["size1"] != 25]
    path = tmp_path / "b3.json"
    path.write_text(json.dumps(third))
    report = verify_bundle_file(path, state_file=state)
    assert not report.ok and report.problem.kind == "proof"
    assert json.loads(state.read_text())["size"] == 25  # unchanged on failure


def test_state_file_catches_a_log_cut_back(filled: AuditLog, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    path = tmp_path / "b.json"
    path.write_text(json.dumps(_bundle(filled)))
    assert verify_bundle_file(path, state_file=state).ok
    cut = _bundle(filled)
    cut["entries"] = cut["entries"][:8]
    cut["checkpoints"] = cut["checkpoints"][:1]
    cut["consistency_proofs"] = []
    path.write_text(json.dumps(cut))
    report = verify_bundle_file(path, state_file=state)
    assert not report.ok and report.problem.kind == "truncated"


def test_cli_entry_point_exit_codes(filled: AuditLog, tmp_path: Path, capsys) -> None:
    path = tmp_path / "b.json"
    path.write_text(json.dumps(_bundle(filled)))
    assert main([str(path)]) == 0
    assert "OK: 20 entries" in capsys.readouterr().out
    bad = _bundle(filled)
    bad["entries"][2]["purpose"] = "changed"
    path.write_text(json.dumps(bad))
    assert main([str(path), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["problem"]["seq"] == 3
    path.write_text("not json")
    assert main([str(path)]) == 2


# What the offline verifier may load besides the standard library: cryptography (with
# its compiled bindings) and the three audit modules an auditor is given.
OFFLINE_AUDIT_MODULES = {"audit", "audit.verify", "audit.merkle", "audit.checkpoint"}
OFFLINE_THIRD_PARTY = {"cryptography", "_cffi_backend", "_openssl"}

ISOLATED = textwrap.dedent(
    """
    import importlib.abc, json, sys

    BEFORE = set(sys.modules)  # the interpreter's start-up, site's .pth hooks included
    AUDIT = set(json.loads(sys.argv.pop(1)))
    ALLOWED = set(json.loads(sys.argv.pop(1))) | set(sys.stdlib_module_names)

    class AllowOnly(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            if top == "audit" and name not in AUDIT or top not in ALLOWED | {"audit"}:
                raise ImportError(f"offline verifier imported {name}")
            return None

    sys.meta_path.insert(0, AllowOnly())
    from audit.verify import main
    code = main(sys.argv[1:])
    ours = sorted(
        m for m in set(sys.modules) - BEFORE if m.split(".")[0] not in sys.stdlib_module_names
    )
    print(json.dumps(ours), file=sys.stderr)
    sys.exit(code)
    """
)


def _imports(path: Path) -> set[str]:
    """Every module a source file imports, wherever the import statement stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_offline_verifier_imports_only_the_standard_library_and_cryptography() -> None:
    """Statically, over every import statement (inside functions too) of the verifier's modules."""
    root = Path(audit.__file__).parent
    seen: set[str] = set()
    todo = ["audit.verify"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for name in _imports(root / f"{module.split('.', 1)[1]}.py"):
            top = name.split(".")[0]
            if top == "audit":
                assert name in OFFLINE_AUDIT_MODULES, f"{module} imports {name}"
                todo.append(name)
            else:
                assert top in sys.stdlib_module_names or top == "cryptography", (
                    f"{module} imports {name}"
                )
    assert seen == OFFLINE_AUDIT_MODULES - {"audit"}
    assert _imports(Path(audit.__file__)) == set()  # importing the package loads nothing


def test_offline_verifier_runs_isolated_without_the_vault(filled: AuditLog, tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text(json.dumps(_bundle(filled)))
    pem = tmp_path / "key.pem"
    pem.write_text(filled.public_key_pem())
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            ISOLATED,
            json.dumps(sorted(OFFLINE_AUDIT_MODULES)),
            json.dumps(sorted(OFFLINE_THIRD_PARTY)),
            str(path),
            "--pubkey",
            str(pem),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "OK: 20 entries" in proc.stdout
    loaded = json.loads(proc.stderr.strip().splitlines()[-1])
    assert {m for m in loaded if m.split(".")[0] == "audit"} == OFFLINE_AUDIT_MODULES
    assert {m.split(".")[0] for m in loaded} <= OFFLINE_THIRD_PARTY | {"audit"}
    proc = subprocess.run(
        [sys.executable, "-I", "-m", "audit.verify", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 0 and "OK" in proc.stdout
