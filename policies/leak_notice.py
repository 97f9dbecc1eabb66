"""The text of a leak notice (PIPL Art 57), in Chinese and English, built from facts only.

Art 57 says what the notice contains: the categories of personal information
affected, the cause and possible harm, the measures taken, what individuals can
do to reduce the harm, and how to contact the handler. Every sentence here is a
template filled with identifiers (the case number, counts, times) and the field
groups' configured labels; nothing anyone typed (the report, reasons) and no
archive content is ever read into it, so the notice cannot carry content.
Field groups the templates do not know get the generic harm and advice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from policies.leak_duty_models import LeakDuty
from policies.leak_models import LeakCase, LeakCaseEvent
from vault.schema import ProfileSchema

CAUSE = {
    "under_investigation": ("原因正在调查中", "the cause is under investigation"),
    "insider_disclosure": ("内部人员违规披露", "disclosure by a member of staff against the rules"),
    "unauthorised_access": ("未经授权的访问", "access without authorisation"),
    "lost_material": ("资料遗失", "material was lost"),
    "misdirected_transmission": ("资料误发", "material was sent to the wrong recipient"),
    "external_attack": ("外部攻击", "an attack from outside the company"),
    "system_fault": ("系统故障", "a fault in a system"),
    "other": ("其他原因", "another cause"),
}
# Possible harm and what individuals can do, per field group (PIPL Art 57 (1), (3)).
HARM = {
    "identity": ("身份被冒用", "your identity may be used by others"),
    "contact": (
        "可能收到骚扰或诈骗电话、短信",
        "you may receive nuisance or fraudulent calls and messages",
    ),
    "whereabouts": ("住址或行踪被他人知悉", "others may learn where you live or go"),
    "credentials": (
        "证件信息可能被冒用办理业务",
        "your identity documents may be misused to open accounts or services",
    ),
    "family": ("家庭成员信息被他人知悉", "others may learn about your family"),
    "finance": ("财务信息被用于诈骗", "your financial information may be used for fraud"),
    "health": ("健康信息被他人知悉", "others may learn about your health"),
    "property": ("房产信息被他人知悉", "others may learn about your property"),
}
ADVICE = {
    "contact": (
        "警惕自称本公司或其他机构的来电、短信，不要透露验证码或转账",
        "be wary of calls and messages claiming to come from us or others; never give "
        "codes or transfer money",
    ),
    "credentials": (
        "留意以您名义办理的业务，必要时向发证机关挂失或补办证件",
        "watch for services opened in your name; if needed, report your documents to the "
        "issuing authority",
    ),
    "finance": (
        "留意账户异常交易，必要时联系您的银行",
        "watch your accounts for unusual transactions and contact your bank if needed",
    ),
    "identity": (
        "留意以您名义办理的业务",
        "watch for services opened in your name",
    ),
}
GENERIC_HARM = ("信息被他人知悉或利用", "others may learn or misuse this information")
GENERIC_ADVICE = (
    "如发现异常，请及时联系我们",
    "if you notice anything unusual, contact us at once",
)
MEASURES = {
    "sessions_ended": (
        "终止了相关账号的登录会话",
        "ended the sign-in sessions of the accounts involved",
    ),
    "tokens_revoked": (
        "吊销了相关账号的访问令牌",
        "revoked the access tokens of the accounts involved",
    ),
    "grants_ended": (
        "终止了相关账号的访问授权",
        "ended the access permissions of the accounts involved",
    ),
    "loans_recalled": ("收回了外借的资料", "recalled material on loan"),
    "user_disabled": ("停用了相关账号", "disabled the accounts involved"),
    "material_recovered": ("追回了外泄的资料", "recovered the leaked material"),
    "regulator_told": ("已向监管部门报告", "reported to the regulator"),
    "customers_told": ("已通知受影响的个人", "notified the people affected"),
}
DEFAULT_CONTACT = ("本公司客户信息主管", "the company's customer-information supervisor")


def measures(events: Iterable[LeakCaseEvent]) -> list[str]:
    """The measures taken, as action names from the case's events (in the order first taken)."""
    seen: dict[str, None] = {}
    for e in events:
        action = str(e.detail.get("action", ""))
        if e.kind in ("containment", "action") and action in MEASURES:
            seen.setdefault(action, None)
    return list(seen)


def notice_facts(
    case: LeakCase, duty: LeakDuty | None, events: Iterable[LeakCaseEvent]
) -> dict[str, Any]:
    """What the notice states, as identifiers and names only."""
    return {
        "case": case.uid,
        "pi_affected": bool(duty and duty.pi_affected),
        "customers": duty.customers if duty else 0,
        "groups": list(duty.groups) if duty else [],
        "cause": duty.cause if duty else "under_investigation",
        "aware_at": duty.aware_at.isoformat() if duty and duty.aware_at else None,
        "measures": measures(events),
    }


def render(facts: dict[str, Any], schema: ProfileSchema, contact: str, lang: str) -> str:
    """One language's notice text (``zh`` or ``en``)."""
    i = 0 if lang == "zh" else 1
    groups = [g for g in facts["groups"] if g in schema.groups]
    label = [schema.groups[g].zh if i == 0 else schema.groups[g].en for g in groups]
    harms = list(dict.fromkeys(HARM.get(g, GENERIC_HARM)[i] for g in groups)) or [GENERIC_HARM[i]]
    advice = list(dict.fromkeys(ADVICE[g][i] for g in groups if g in ADVICE))
    advice.append(GENERIC_ADVICE[i])
    done = [MEASURES[m][i] for m in facts["measures"]]
    cause = CAUSE.get(facts["cause"], CAUSE["other"])[i]
    who = contact or DEFAULT_CONTACT[i]
    sep, end = ("、", "。") if i == 0 else (", ", ".")
    if i == 0:
        lines = [
            f"个人信息泄露通知（事件编号 {facts['case']}）",
            f"一、涉及的个人信息种类：{sep.join(label) or '待确定'}；"
            f"涉及客户约 {facts['customers']} 人。",
            f"二、发生原因：{cause}。",
            f"三、可能造成的危害：{sep.join(harms)}{end}",
            f"四、已采取的补救措施：{sep.join(done) or '正在采取'}{end}",
            f"五、您可以采取的减轻危害的措施：{'；'.join(advice)}{end}",
            f"六、联系方式：{who}",
        ]
    else:
        lines = [
            f"Notice of a personal information leak (case {facts['case']})",
            f"1. Categories of personal information affected: "
            f"{sep.join(label) or 'to be determined'}; about {facts['customers']} customer(s).",
            f"2. Cause: {cause}.",
            f"3. Possible harm: {'; '.join(harms)}.",
            f"4. Measures taken: {'; '.join(done) or 'being taken'}.",
            f"5. What you can do to reduce the harm: {'; '.join(advice)}.",
            f"6. Contact: {who}",
        ]
    return "\n".join(lines) + "\n"
