"""Offline verification of the audit log: run it alone with ``python -m audit.verify bundle.json``.

This module and the two it imports (``audit.merkle``, ``audit.checkpoint``)
use only the standard library and ``cryptography``: an auditor can check a
bundle without the vault's code, database or keys, and without trusting any
hash the bundle claims. Everything is recomputed from the entries:

1. every checkpoint's signature (log key, pinned with ``--pubkey`` or taken
   from the state file or, on first use, from the bundle);
2. every entry's leaf hash from its canonical bytes, the hash chain, and the
   gapless sequence;
3. the Merkle root at every checkpoint size, the consistency proofs between
   checkpoints and any inclusion proofs;
4. with ``--state FILE``: that the newest checkpoint extends the one accepted
   last time (a consistency proof from it is required), so a log that was
   rewritten or cut back between two audits is refused.

The same streaming checker (``ChainChecker``) verifies the database, so the
rules that locate the first bad entry are written once.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.checkpoint import (
    CheckpointError,
    SignedCheckpoint,
    load_public_key_pem,
    open_checkpoint,
    public_key_pem,
    raw_public_key,
)
from audit.merkle import (
    ENTRY_FIELDS,
    ZERO_HASH,
    CompactRange,
    ProofError,
    canonical_entry_bytes,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

BUNDLE_FORMAT = "archive-vault-audit-bundle/1"
STATE_FORMAT = "archive-vault-audit-state/1"


class BundleError(ValueError):
    """The bundle or state file cannot be read at all (not JSON, wrong format, wrong key)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing found wrong; ``seq`` is the first entry that cannot be trusted."""

    # missing | inserted | edited | replaced | truncated | checkpoint | proof | malformed
    # | forged (MAC check, with the key only) | replayed, stalled (the append queue)
    kind: str
    message: str
    seq: int | None = None

    def __str__(self) -> str:
        where = f"entry {self.seq}: " if self.seq is not None else ""
        return f"{where}{self.message} [{self.kind}]"


@dataclass
class Report:
    """The outcome of a verification.

    ``problem`` is the first thing wrong (the first bad entry when there is
    one); ``problems`` lists everything found, in order, when a verifier can
    go on after a finding (the database verifier reports every entry whose MAC
    fails and every checkpoint row it skipped).
    """

    ok: bool
    entries: int
    checkpoints: int
    root: bytes
    latest_checkpoint: SignedCheckpoint | None = None
    problem: Problem | None = None
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def all_problems(self) -> list[Problem]:
        if self.problems:
            return list(self.problems)
        return [] if self.problem is None else [self.problem]

    def summary(self) -> str:
        if self.problem is not None:
            more = len(self.all_problems()) - 1
            return f"FAILED: {self.problem}" + (f" (and {more} more)" if more > 0 else "")
        cp = self.latest_checkpoint
        signed = (
            f"; newest signed checkpoint covers {cp.size}" if cp else "; no signed checkpoint yet"
        )
        root = base64.b64encode(self.root).decode("ascii")
        return (
            f"OK: {self.entries} entries, {self.checkpoints} checkpoints verified; "
            f"root {root}{signed}"
        )


# The findings of the chain rules, one constructor each: the database verifier
# (``audit.verify_ranges``) applies the same rules range by range and must word
# and locate every finding exactly as ``ChainChecker`` does.


def sequence_problem(n: int, seq: int) -> Problem:
    """Entry ``n`` was expected and a row with ``seq`` came instead."""
    if seq > n:
        return Problem("missing", f"missing: the log jumps from entry {n - 1} to entry {seq}", n)
    return Problem("replaced", f"entry {seq} appears again after entry {n - 1}", n)


def link_problem(n: int, prev_hash: bytes, before_last: bytes | None, intact: bool) -> Problem:
    """Entry ``n`` does not link to entry ``n - 1``; which edit explains it."""
    if before_last is not None and prev_hash == before_last:
        return Problem(
            "inserted",
            f"not part of the original chain: entry {n} links past it to entry {n - 2}",
            n - 1,
        )
    if intact and n > 1:
        return Problem(
            "edited",
            f"altered and its stored hash recomputed: entry {n} still links to the original",
            n - 1,
        )
    return Problem(
        "replaced",
        f"does not follow entry {n - 1} (reordered, replaced, or an entry before it removed)"
        if n > 1
        else "does not start the chain (prev_hash is not zero)",
        n,
    )


def edited_problem(n: int) -> Problem:
    return Problem(
        "edited", "content does not match its stored hash (edited after it was written)", n
    )


def checkpoint_problem(matched_size: int, n: int) -> Problem:
    """The root of entries 1..n differs from the one signed for size n."""
    first = matched_size + 1
    return Problem(
        "checkpoint",
        f"entries {first}..{n} do not reproduce the root signed for size {n} "
        f"(the checkpoint at size {matched_size} still matches): entries in "
        "that range were rewritten together with their hashes",
        first,
    )


def truncated_problem(count: int, signed_size: int) -> Problem:
    return Problem(
        "truncated",
        f"missing: the log ends at entry {count} but a signed checkpoint "
        f"covers {signed_size} entries (tail removed)",
        count + 1,
    )


class ChainChecker:
    """Streams entries in sequence order and remembers the first problem.

    Stored hashes are never trusted; they are only compared with the
    recomputed ones to tell an edited entry from a reordered or inserted one.
    The checkpoints passed in must already have had their signatures checked.
    """

    def __init__(
        self, checkpoints: Sequence[SignedCheckpoint], *, keep_leaves: bool = False
    ) -> None:
        self.checkpoints = sorted(checkpoints, key=lambda c: c.size)
        self._pending = [c for c in self.checkpoints if c.size > 0]
        self._pending.reverse()  # pop() yields the smallest size next
        self._matched_size = 0
        self.range = CompactRange()
        self.count = 0
        self.problem: Problem | None = None
        self._last = ZERO_HASH
        self._before_last: bytes | None = None
        self.leaves: list[bytes] | None = [] if keep_leaves else None

    def add(self, seq: int, canonical: bytes, prev_hash: bytes, stored_hash: bytes | None) -> bool:
        """Feed one entry; returns False once a problem is known (the caller may stop)."""
        if self.problem is not None:
            return False
        n = self.count + 1
        if seq != n:
            self.problem = sequence_problem(n, seq)
            return False
        leaf = leaf_hash(canonical)
        intact = stored_hash is None or leaf == stored_hash
        if prev_hash != self._last:
            self.problem = link_problem(n, prev_hash, self._before_last, intact)
            return False
        if not intact:
            self.problem = edited_problem(n)
            return False
        self.range.append(leaf)
        if self.leaves is not None:
            self.leaves.append(leaf)
        self._before_last, self._last = self._last, leaf
        self.count = n
        if self._pending and self._pending[-1].size == n:
            cp = self._pending.pop()
            if not hmac.compare_digest(self.range.root(), cp.root):
                self.problem = checkpoint_problem(self._matched_size, n)
                return False
            self._matched_size = n
        return True

    def finish(self) -> Report:
        if self.problem is None and self._pending:
            # The largest signed size not reached.
            self.problem = truncated_problem(self.count, self._pending[0].size)
        latest = self.checkpoints[-1] if self.checkpoints else None
        return Report(
            ok=self.problem is None,
            entries=self.count,
            checkpoints=len(self.checkpoints),
            root=self.range.root(),
            latest_checkpoint=latest,
            problem=self.problem,
        )


def _unhex(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise BundleError(f"{what} is not a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise BundleError(f"{what} is not hex") from None


def _entry_parts(entry: Any, position: int) -> tuple[int, bytes, bytes, bytes | None]:
    if not isinstance(entry, Mapping):
        raise BundleError(f"entry #{position} is not an object")
    seq = entry.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise BundleError(f"entry #{position} has no integer seq")
    try:
        canonical = canonical_entry_bytes({k: entry[k] for k in ENTRY_FIELDS if k in entry})
    except (ValueError, TypeError) as exc:
        raise BundleError(f"entry {seq} is malformed: {exc}") from None
    stored = entry.get("entry_hash")
    return (
        seq,
        canonical,
        _unhex(entry.get("prev_hash"), f"entry {seq} prev_hash"),
        (None if stored is None else _unhex(stored, f"entry {seq} entry_hash")),
    )


def _same_key(a: Ed25519PublicKey, b: Ed25519PublicKey) -> bool:
    return hmac.compare_digest(raw_public_key(a), raw_public_key(b))


def load_state(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"state file {path} is unreadable: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise BundleError(f"state file {path} is not an audit verifier state file")
    return state


def state_for(checkpoint: SignedCheckpoint, key: Ed25519PublicKey) -> dict[str, Any]:
    """What an auditor keeps between two verifications: the last accepted checkpoint and key."""
    return {
        "format": STATE_FORMAT,
        "origin": checkpoint.origin,
        "size": checkpoint.size,
        "root": checkpoint.root_b64,
        "note": checkpoint.note,
        "public_key_pem": public_key_pem(key),
    }


def save_state(path: Path, checkpoint: SignedCheckpoint, key: Ed25519PublicKey) -> None:
    """Replace the state file whole (a temporary file beside it, then renamed).

    The temporary name is predictable: it is created afresh and never through a
    link someone planted there (``O_EXCL|O_NOFOLLOW``), which would otherwise have
    the verifying account write over any file it may write.
    """
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # a leftover, or a planted link
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(state_for(checkpoint, key), indent=2))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def verify_bundle(
    bundle: Mapping[str, Any],
    *,
    public_key: Ed25519PublicKey | None = None,
    state: Mapping[str, Any] | None = None,
) -> Report:
    """Verify a whole bundle; a Report with ``problem`` set says what is wrong and where.

    Raises BundleError only when the bundle cannot be interpreted at all or is
    signed by a key other than the pinned one.
    """
    if bundle.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"not an audit bundle (format {bundle.get('format')!r})")
    origin = bundle.get("origin")
    if not isinstance(origin, str) or not origin:
        raise BundleError("bundle has no origin")
    try:
        bundle_key = load_public_key_pem(str(bundle.get("public_key_pem", "")))
    except CheckpointError as exc:
        raise BundleError(f"bundle public key: {exc}") from None
    pinned = public_key
    if state is not None:
        try:
            state_key = load_public_key_pem(str(state.get("public_key_pem", "")))
        except CheckpointError as exc:
            raise BundleError(f"state file public key: {exc}") from None
        if pinned is not None and not _same_key(pinned, state_key):
            raise BundleError("the pinned public key differs from the one in the state file")
        pinned = pinned or state_key
        if state.get("origin") != origin:
            raise BundleError(
                f"bundle is for log {origin!r}, state file for {state.get('origin')!r}"
            )
    key = pinned or bundle_key
    if not _same_key(key, bundle_key):
        raise BundleError("bundle is signed with a different public key than the pinned one")

    def failed(kind: str, message: str, seq: int | None = None) -> Report:
        return Report(
            ok=False,
            entries=0,
            checkpoints=0,
            root=b"",
            problem=Problem(kind=kind, message=message, seq=seq),
        )

    checkpoints: list[SignedCheckpoint] = []
    for i, item in enumerate(bundle.get("checkpoints") or []):
        note = item.get("note") if isinstance(item, Mapping) else None
        if not isinstance(note, str):
            return failed("malformed", f"checkpoint #{i} has no note")
        try:
            cp = open_checkpoint(note, key, origin)
        except CheckpointError as exc:
            return failed("checkpoint", str(exc))
        if checkpoints and cp.size <= checkpoints[-1].size:
            return failed(
                "checkpoint",
                f"checkpoint sizes do not increase ({cp.size} after {checkpoints[-1].size})",
            )
        checkpoints.append(cp)
    by_size = {cp.size: cp for cp in checkpoints}

    for item in bundle.get("consistency_proofs") or []:
        try:
            s1, s2 = int(item["size1"]), int(item["size2"])
            proof = [_unhex(h, "consistency proof") for h in item["proof"]]
            if s1 not in by_size or s2 not in by_size:
                return failed(
                    "proof", f"consistency proof {s1}->{s2} is not between signed checkpoints"
                )
            verify_consistency(s1, s2, by_size[s1].root, by_size[s2].root, proof)
        except ProofError as exc:
            return failed(
                "proof", f"consistency proof {item.get('size1')}->{item.get('size2')}: {exc}"
            )
        except (KeyError, TypeError, ValueError) as exc:
            return failed("malformed", f"malformed consistency proof: {exc}")

    entries = bundle.get("entries")
    if not isinstance(entries, list):
        raise BundleError("bundle has no entry list")
    checker = ChainChecker(checkpoints, keep_leaves=True)
    for position, entry in enumerate(entries):
        try:
            parts = _entry_parts(entry, position)
        except BundleError as exc:
            return failed("malformed", str(exc), position + 1)
        if not checker.add(*parts):
            break
    report = checker.finish()
    if not report.ok:
        return report

    leaves = checker.leaves or []
    for item in bundle.get("inclusion_proofs") or []:
        try:
            seq, size = int(item["seq"]), int(item["size"])
            proof = [_unhex(h, "inclusion proof") for h in item["proof"]]
            if size not in by_size:
                report.problem = Problem(
                    "proof", f"inclusion proof against unsigned size {size}", seq
                )
            elif not 1 <= seq <= len(leaves):
                report.problem = Problem(
                    "proof", "inclusion proof for an entry not in the bundle", seq
                )
            else:
                verify_inclusion(seq - 1, size, leaves[seq - 1], proof, by_size[size].root)
                report.notes.append(f"entry {seq} is included in the tree of size {size}")
        except ProofError as exc:
            report.problem = Problem("proof", f"inclusion proof: {exc}", item.get("seq"))
        except (KeyError, TypeError, ValueError) as exc:
            report.problem = Problem("malformed", f"malformed inclusion proof: {exc}")
        if report.problem is not None:
            report.ok = False
            return report

    if state is not None:
        problem = check_against_state(state, checkpoints, bundle, key, origin)
        if problem is not None:
            report.ok, report.problem = False, problem
            return report
        report.notes.append(f"extends the previously accepted checkpoint of size {state['size']}")
    return report


def check_against_state(
    state: Mapping[str, Any],
    checkpoints: Sequence[SignedCheckpoint],
    bundle: Mapping[str, Any],
    key: Ed25519PublicKey,
    origin: str,
) -> Problem | None:
    """Require the newest checkpoint to extend the one accepted last time, by a proof.

    ``state`` is what ``state_for`` kept; the proof is looked for among
    ``bundle["consistency_proofs"]``. None when the newest checkpoint extends
    the accepted one; shared by the bundle verifier and ``audit verify --state``.
    """
    try:
        old = open_checkpoint(str(state.get("note", "")), key, origin)
    except CheckpointError as exc:
        return Problem("checkpoint", f"state file checkpoint: {exc}")
    if not checkpoints:
        return Problem("truncated", f"bundle has no checkpoint; last accepted size was {old.size}")
    new = checkpoints[-1]
    if new.size < old.size:
        return Problem(
            "truncated",
            f"newest checkpoint covers {new.size} entries, fewer than the "
            f"{old.size} accepted before (log cut back)",
            new.size + 1,
        )
    if new.size == old.size:
        if not hmac.compare_digest(new.root, old.root):
            return Problem("checkpoint", f"two different roots signed for size {old.size} (fork)")
        return None
    for item in bundle.get("consistency_proofs") or []:
        if item.get("size1") == old.size and item.get("size2") == new.size:
            try:
                proof = [_unhex(h, "consistency proof") for h in item["proof"]]
                verify_consistency(old.size, new.size, old.root, new.root, proof)
            except (ProofError, BundleError) as exc:
                return Problem(
                    "proof", f"no valid consistency from accepted size {old.size}: {exc}"
                )
            return None
    return Problem(
        "proof",
        f"bundle carries no consistency proof from the accepted size {old.size} to {new.size}",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audit.verify",
        description="Verify an archive-vault audit bundle offline "
        "(standard library + cryptography).",
    )
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--pubkey", type=Path, help="PEM file of the log's public key to pin")
    parser.add_argument(
        "--state", type=Path, help="file keeping the last accepted checkpoint; updated on success"
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)
    try:
        report = verify_bundle_file(args.bundle, pubkey_file=args.pubkey, state_file=args.state)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report_json(report)))
    else:
        print(report.summary())
        for note in report.notes:
            print(f"  {note}")
    return 0 if report.ok else 1


def report_json(report: Report) -> dict[str, Any]:
    cp = report.latest_checkpoint
    return {
        "ok": report.ok,
        "entries": report.entries,
        "checkpoints": report.checkpoints,
        "root": base64.b64encode(report.root).decode("ascii"),
        "latest_checkpoint_size": cp.size if cp else None,
        "problem": None
        if report.problem is None
        else {
            "kind": report.problem.kind,
            "seq": report.problem.seq,
            "message": report.problem.message,
        },
        "notes": report.notes,
    }


def verify_bundle_file(
    path: Path, *, pubkey_file: Path | None = None, state_file: Path | None = None
) -> Report:
    """Read, verify and (on success) advance the state file; shared by both CLIs."""
    try:
        bundle = json.loads(path.read_bytes())
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError):
        raise BundleError(f"{path} is not JSON") from None
    if not isinstance(bundle, dict):
        raise BundleError(f"{path} is not an audit bundle")
    pinned = None
    if pubkey_file is not None:
        try:
            pinned = load_public_key_pem(pubkey_file.read_bytes())
        except OSError as exc:
            raise BundleError(f"cannot read {pubkey_file}: {exc.strerror or exc}") from None
        except CheckpointError as exc:
            raise BundleError(f"{pubkey_file}: {exc}") from None
    state = load_state(state_file) if state_file is not None else None
    report = verify_bundle(bundle, public_key=pinned, state=state)
    if report.ok and state_file is not None and report.latest_checkpoint is not None:
        key = pinned or (
            load_public_key_pem(state["public_key_pem"])
            if state
            else load_public_key_pem(bundle["public_key_pem"])
        )
        save_state(state_file, report.latest_checkpoint, key)
    return report


if __name__ == "__main__":
    sys.exit(main())
