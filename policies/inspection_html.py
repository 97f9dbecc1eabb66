"""A readable HTML page of a signed inspection report (Art 14), for the record.

The page is rendered from the signed JSON document with Jinja2, every value
escaped (autoescape on; the report holds identifiers and counts, but a stored
row could hold anything). It is a reading aid: the signature is checked on the
JSON (``archive-vault inspect verify``), never on this page, which says so.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, StrictUndefined

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Inspection {{ b.inspection }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #bbb;padding:.2em .6em;text-align:left}
.bad{color:#a00;font-weight:bold}.good{color:#070;font-weight:bold}
code{font-size:.9em}
</style></head><body>
<h1>Inspection {{ b.inspection }} (Art 14)</h1>
<p>Vault <code>{{ b.vault_id }}</code>, run by {{ b.by }} from {{ b.started_at }}
to {{ b.finished_at }}.</p>
<p>Result: {% if b.clean %}<span class="good">clean</span>{% else %}
<span class="bad">findings</span>{% endif %};
integrity {% if b.integrity_ok %}<span class="good">ok</span>{% else %}
<span class="bad">FAILED</span>{% endif %}.</p>

<h2>Ciphertexts</h2>
<p>{{ b.content.archives_checked }} archives checked,
{{ b.content.destroyed_skipped }} destroyed archives skipped.</p>
<table><tr><th>kind</th><th>ok</th><th>failed</th></tr>
{% for kind, t in b.content.kinds.items() %}
<tr><td>{{ kind }}</td><td>{{ t.ok }}</td>
<td{% if t.failed %} class="bad"{% endif %}>{{ t.failed }}</td></tr>
{% endfor %}
<tr><td>leak case text</td><td>{{ b.leak_case_texts.ok }}</td>
<td{% if b.leak_case_texts.failed %} class="bad"{% endif %}>{{ b.leak_case_texts.failed }}</td>
</tr></table>
{% if b.content.failing_archives %}
<p class="bad">Archives whose ciphertexts failed:</p>
<table><tr><th>archive</th><th>kinds</th></tr>
{% for f in b.content.failing_archives %}
<tr><td>{{ f.archive_no }}</td><td>{{ f.kinds | join(", ") }}</td></tr>
{% endfor %}</table>
{% endif %}
{% if b.leak_case_texts.failing_cases %}
<p class="bad">Leak cases whose text failed: {{ b.leak_case_texts.failing_cases | join(", ") }}</p>
{% endif %}

<h2>Audit log</h2>
<p>{{ b.audit_log.entries }} entries, {{ b.audit_log.checkpoints }} checkpoints:
{% if b.audit_log.ok %}<span class="good">verified</span>{% else %}
<span class="bad">FAILED</span>{% endif %}.
{% set cp = b.audit_log.newest_checkpoint %}
{% if cp %}Newest signed checkpoint: size {{ cp.size }}, signed {{ cp.signed_at }},
root <code>{{ cp.root }}</code>; {{ cp.entries_after }} entries after it.
{% else %}<span class="bad">No signed checkpoint.</span>{% endif %}</p>
{% if b.audit_log.problems %}
<table><tr><th>seq</th><th>kind</th><th>problem</th></tr>
{% for p in b.audit_log.problems %}
<tr><td>{{ p.seq }}</td><td>{{ p.kind }}</td><td>{{ p.message }}</td></tr>
{% endfor %}</table>
{% endif %}

{% for key, title, columns in sections %}
{% set part = b.findings[key] %}
<h2>{{ title }} ({{ part.total }})</h2>
{% if part["items"] %}
<table><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for item in part["items"] %}
<tr>{% for c in columns %}<td>{{ cell(item[c]) }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% if part.truncated %}<p>Only the first {{ part["items"] | length }} are listed.</p>{% endif %}
{% else %}<p>None.</p>{% endif %}
{% endfor %}

<h2>Signature</h2>
<p>{{ s.algorithm }} by the audit log key of <code>{{ s.origin }}</code>
(key id <code>{{ s.key_id }}</code>, SHA-256 of the public key
<code>{{ s.public_key_sha256 }}</code>); report hash <code>{{ s.body_sha256 }}</code>.
This page is not what is signed: check the JSON with
<code>archive-vault inspect verify</code>.</p>
</body></html>
"""

SECTIONS = (
    ("overdue_loans", "Overdue loans", ("loan", "borrower", "archives", "due_at")),
    ("past_retention", "Archives past retention", ("archive_no", "retention_until")),
    (
        "without_custodian",
        "Secret and top-secret archives without a valid custodian",
        ("archive_no", "classification", "custodian", "problem"),
    ),
    (
        "grants_outliving_users",
        "Grants that outlived their users",
        ("grant", "holder", "why", "kind", "not_after"),
    ),
)

_ENV = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True)
_PAGE = _ENV.from_string(_TEMPLATE)


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def render_html(doc: dict[str, Any]) -> str:
    """The page of a signed report document (as ``sign_report`` made it)."""
    return _PAGE.render(b=doc["body"], s=doc["signature"], sections=SECTIONS, cell=_cell)
