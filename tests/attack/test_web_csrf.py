"""CSRF on the pages: a signed-in form must carry the token of *this session*.

``kit.checked_form`` accepts, next to the session's token, the token of the
browser's pre-session cookie (``av_pre``, meant for the sign-in and language
forms). That cookie is not rotated at sign-in, is not tied to anyone, and its
token is printed on every anonymous page. So:

- a token from before sign-in keeps working for every signed-in form;
- whoever can plant an ``av_pre`` cookie of their own in the victim's browser
  (any sibling subdomain can: SameSite does not separate same-site hosts, and
  the cookie has no ``__Host-`` prefix) knows a token that passes every
  signed-in form of the victim: the classic double-submit-cookie weakness,
  which a token bound to the session key was meant to rule out.
"""

from __future__ import annotations


def test_a_pre_session_token_from_before_sign_in_is_refused_after_it(browser) -> None:
    b = browser()
    b.get("/login")
    before = b.csrf  # the token the sign-in page printed
    b.sign_in("li.na")
    assert b.csrf != before
    r = b.post("/ui/leaks/new", {"what_seen": "forged", "csrf": before})
    assert r.status_code == 403, "a signed-in form took the pre-session token"


def test_a_planted_pre_cookie_does_not_forge_signed_in_forms(browser) -> None:
    victim = browser("zhang.wei")
    # The attacker's own anonymous visit: a pre cookie and the token the page prints for it.
    attacker = browser()
    attacker.get("/login")
    planted, token = attacker.http.cookies.get("av_pre"), attacker.csrf
    # Planted in the victim's browser (cookie tossing from a sibling host).
    victim.http.cookies.set("av_pre", planted)
    r = victim.post("/ui/leaks/new", {"what_seen": "forged", "csrf": token})
    assert r.status_code == 403, "the victim filed a leak report the attacker wrote"
    r = victim.post("/logout", {"csrf": token})
    assert r.status_code == 403, "the attacker signed the victim out"
    assert victim.get("/ui").status_code == 200
