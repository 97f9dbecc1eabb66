"""The words the pages show for the vault's codes (roles, markings, kinds, states).

Each value is an English msgid, translated through the catalogs like every other
string of the pages (``N_`` marks it for extraction and returns it unchanged).
A code without a label is shown as the code itself.
"""

from __future__ import annotations


def N_(message: str) -> str:
    return message


ROLES = {
    "salesperson": N_("Salesperson"),
    "department_head": N_("Department head"),
    "information_officer": N_("Information officer"),
    "info_supervisor": N_("Information supervisor"),
    "cs_manager": N_("Customer-service manager"),
    "general_manager": N_("General manager"),
    "compliance": N_("Compliance"),
    "external": N_("External visitor"),
    "admin": N_("Administrator"),
}
MARKINGS = {
    "internal": N_("Internal"),
    "secret": N_("Secret"),
    "top_secret": N_("Top secret"),
}
# The marking printed on the banner in every language, as on paper (Art 22).
MARKING_MARKS = {"internal": "内部", "secret": "机密", "top_secret": "绝密"}
KINDS = {
    "view": N_("View"),
    "loan": N_("Loan"),
    "copy": N_("Copy"),
    "external": N_("Provide to an outside party"),
    "report": N_("Statistical report"),
    "destroy": N_("Destruction"),
    "reassign": N_("Reassignment"),
    "reclassify": N_("Reclassification"),
    "role": N_("Role change"),
    "handover": N_("Staff handover"),
    "report_items": N_("Report items change"),
}
STATES = {
    "pending": N_("Pending"),
    "approved": N_("Approved"),
    "denied": N_("Denied"),
    "withdrawn": N_("Withdrawn"),
    "expired": N_("Expired"),
    "active": N_("Active"),
    "returned": N_("Returned"),
    "revoked": N_("Revoked"),
    "out": N_("Out"),
    "overdue": N_("Overdue"),
}
OUTCOMES = {
    "allowed": N_("Allowed"),
    "denied": N_("Refused"),
    "error": N_("Error"),
}
CASE = {
    "reported": N_("Reported"),
    "investigating": N_("Investigating"),
    "contained": N_("Contained"),
    "closed": N_("Closed"),
    "confirmed": N_("Leak confirmed"),
    "unfounded": N_("Unfounded"),
    "dismissed": N_("Dismissed"),
    "report": N_("Report"),
    "detection": N_("Detection"),
}
CHANNELS = {
    "email": N_("E-mail"),
    "phone": N_("Telephone"),
    "messaging": N_("Messaging app"),
    "paper": N_("Paper"),
    "in_person": N_("In person"),
    "website": N_("Website"),
    "removable_media": N_("Removable media"),
    "unknown": N_("Unknown"),
    "other": N_("Other"),
}
LEAK_ACTIONS = {
    "tokens_revoked": N_("Tokens revoked"),
    "sessions_ended": N_("Sessions ended"),
    "grants_ended": N_("Grants ended"),
    "loans_recalled": N_("Loans recalled"),
    "user_disabled": N_("User disabled"),
    "customers_told": N_("Customers told"),
    "regulator_told": N_("Regulator told"),
    "material_recovered": N_("Material recovered"),
    "other": N_("Other"),
}
CATEGORIES = {"general": N_("General"), "special": N_("Special")}
ARCHIVE_STATUS = {"active": N_("Active"), "destroyed": N_("Destroyed")}
TABLES = {
    "role": ROLES,
    "marking": MARKINGS,
    "kind": KINDS,
    "state": STATES,
    "outcome": OUTCOMES,
    "case": CASE,
    "channel": CHANNELS,
    "leak_action": LEAK_ACTIONS,
    "category": CATEGORIES,
    "archive_status": ARCHIVE_STATUS,
}
