"""The HTTP service: how callers reach the vault, and nothing the vault decides.

``app`` builds the FastAPI application and its middleware (body limits,
security headers, the last-resort error answer); ``fastpath`` serves the hot
``GET /customers/{no}`` before routing, through the same unit of work as the
route; ``security`` (Argon2id, JWT), ``login_guard`` and ``deps`` turn a request
into a caller; ``accounts`` logs in, changes one's own password and completes
resets (counted and audited); ``audit_trail`` serves the audited reads of the
audit log; ``services`` wires these and the policies' services over one opened
vault, with the liveness probe;
``errors`` and ``problems`` map every error to a problem+json answer;
``uploads`` and ``downloads`` stream attachments; ``routers`` hold the routes,
which parse, call one service and map its result. Rules live in ``policies``,
content in ``vault``: a route never runs SQL or decides on its own.
"""
