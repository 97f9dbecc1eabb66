"""``model.conf`` and ``policy.csv`` as pycasbin reads them, evaluated on the hot path.

pycasbin loads and checks both files (its file adapter), and its public pieces
evaluate them: the model's matcher, request and policy tokens and effect come
from ``Enforcer.get_model()``; the matcher is evaluated by ``casbin.util.SimpleEval``
with pycasbin's function map and a ``g`` built by ``casbin.util.generate_g_function``
over our grant link store (``policies.grants.GrantLinks``, a Casbin role manager);
the effect is combined by pycasbin's effector for the model's ``[policy_effect]``.

The loop that asks the matcher of each policy line is ours, for two reasons
pycasbin's public API leaves no other way around:

* ``enforce``/``enforce_ex`` parse the matcher string again on every call (about
  70 µs of the 100 µs a call costs) and offer no public hook to reuse the parse;
  the only way to cache it inside pycasbin is to override its private
  ``_get_expression``. Here it is parsed once, when the engine starts.
* A decision asks about one (action, role) at a time; the lines for that pair are
  indexed once, so an evaluation looks at a handful of lines, never at all of them.

The loop keeps pycasbin's semantics: lines in file order, the effector's
intermediate effect may stop early, the explanation is the last matching line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import casbin
from casbin.effect import Effector, effect_to_bool, get_effector
from casbin.model import FunctionMap
from casbin.util import SimpleEval, generate_g_function, has_eval

from policies.errors import ConfigError
from policies.grants import GrantLinks

Line = tuple[str, ...]


def _as_python(matcher: str) -> str:
    """Casbin's matcher syntax as the Python expression its evaluator reads."""
    out = matcher.replace("&&", " and ").replace("||", " or ")
    return re.sub(r"!(?!=)", " not ", out)


class CasbinModel:
    """The base policy and the matcher, loaded once; not thread-safe on its own
    (the evaluator keeps the names of the call in progress): ``PolicyEngine``
    serialises calls."""

    def __init__(self, model_file: Path, policy_file: Path, links: GrantLinks) -> None:
        try:
            enforcer = casbin.Enforcer(str(model_file), str(policy_file))
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            raise ConfigError(f"cannot load Casbin policy: {exc}") from None
        if enforcer.get_grouping_policy():
            raise ConfigError(f"{policy_file}: grants are never policy lines (g lines found)")
        model = enforcer.get_model().model
        try:
            matcher: str = model["m"]["m"].value
            self._r_tokens: list[str] = list(model["r"]["r"].tokens)
            self._p_tokens: list[str] = list(model["p"]["p"].tokens)
            effect: str = model["e"]["e"].value
            model["g"]["g"]
        except KeyError as exc:
            raise ConfigError(f"{model_file}: section {exc} is missing") from None
        if has_eval(matcher):
            raise ConfigError(f"{model_file}: eval() in the matcher is not supported")
        functions: dict[str, Any] = FunctionMap.load_function_map().get_functions()
        functions["g"] = generate_g_function(links)
        self._matcher = SimpleEval(_as_python(matcher), functions)
        self._effector = get_effector(effect)
        self.lines: list[Line] = [tuple(p) for p in enforcer.get_policy()]
        self._by_pair: dict[tuple[str, str], list[dict[str, str]]] = {}
        for line in self.lines:
            if len(line) >= 2:
                params = dict(zip(self._p_tokens, line, strict=False))
                self._by_pair.setdefault((line[0], line[1]), []).append(params)

    def has_lines(self, action: str, role: str) -> bool:
        return (action, role) in self._by_pair

    def enforce(self, rvals: Sequence[str]) -> tuple[bool, Line]:
        """Casbin's answer for one request (whose first two values are the action and
        the role): allowed, and the policy line that decided it (``()`` if none)."""
        if len(rvals) != len(self._r_tokens):
            raise ConfigError("request does not match model.conf's request_definition")
        request = dict(zip(self._r_tokens, rvals, strict=True))
        effects: set[Any] = set()
        explain: dict[str, str] | None = None
        for params in self._by_pair.get((rvals[0], rvals[1]), ()):
            if not self._matcher.eval({**request, **params}):
                effects.add(Effector.INDETERMINATE)
                continue
            eft = params.get("p_eft", "allow")
            effects.add(
                Effector.ALLOW
                if eft == "allow"
                else Effector.DENY
                if eft == "deny"
                else Effector.INDETERMINATE
            )
            explain = params
            if self._effector.intermediate_effect(effects) != Effector.INDETERMINATE:
                break
        allowed = bool(effect_to_bool(self._effector.final_effect(effects)))
        rule = tuple(explain[t] for t in self._p_tokens) if explain is not None else ()
        return allowed, rule
