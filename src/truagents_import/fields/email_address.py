"""The email normaliser (SPEC 3): exactly what email-validator says, with a fast path for plain addresses.

A fast path answers only what the library certainly answers the same way (an ASCII address
whose domain's verdict is remembered) and hands everything else, including every refusal, to
the library; ``tests/test_differential.py`` holds it to that.
"""

from __future__ import annotations

import functools
import re

import email_validator

from truagents_import.errors import FieldError

__all__ = ["normalise_email"]

#: A lower-cased address whose local part is a plain ASCII dot-atom (the characters email-validator's
#: ``DOT_ATOM_TEXT`` allows) and whose domain is plain ASCII: the fast path of :func:`normalise_email`.
_ATEXT = r"a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~"
_PLAIN_ADDRESS = re.compile(rf"([{_ATEXT}]+(?:\.[{_ATEXT}]+)*)@([a-z0-9.\-]+)")
#: email-validator's limits: the whole address (in UTF-8 bytes, in every form it checks) and, in
#: its ``strict`` mode, the local part.
_ADDRESS_MAX = 254
_LOCAL_MAX = 64


@functools.lru_cache(maxsize=4096)
def _plain_domain(domain: str) -> tuple[str, int] | None:
    """email-validator's verdict on an ASCII domain, asked once per distinct domain.

    Returns the domain's normalised form and the widest (in UTF-8 bytes) of the three forms
    whose length email-validator checks (as written, normalised, IDNA ASCII), or ``None`` when
    email-validator refuses ``a@<domain>`` (addresses at such a domain are then always handed
    to email-validator whole, so every refusal and its message stay the library's own).
    """
    try:
        checked = email_validator.validate_email("a@" + domain, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return None
    widest = max(len(domain), len(checked.domain.encode("utf-8")), len(checked.ascii_domain))
    return str(checked.domain), widest


def normalise_email(value: str) -> str:
    """Strip and lower-case an address, check its syntax with email-validator (no DNS look-up).

    Returns email-validator's normalised form of the lower-cased address: Unicode in NFC,
    an internationalised domain in its Unicode form (``a@xn--ber-goa.de`` -> ``a@über.de``).
    email-validator's defaults apply: quoted local parts, IP-address domains, display names
    (``Ann <ann@example.com>``) and special-use domains (``.test``, ``.local``) are invalid.

    Fast path: for an all-ASCII address whose local part is a dot-atom, email-validator's
    verdict depends on the domain alone (the local part passes its first check unchanged and
    the length limits are arithmetic), so the domain is judged once and remembered. Every
    other address, and every address at a domain email-validator refuses, goes to
    email-validator itself.
    """
    address = value.strip().lower()
    plain = _PLAIN_ADDRESS.fullmatch(address)
    if plain is not None:
        local, domain = plain.groups()
        known = _plain_domain(domain)
        if known is not None and len(local) <= _LOCAL_MAX and len(local) + 1 + known[1] <= _ADDRESS_MAX:
            return local + "@" + known[0]
    try:
        return str(email_validator.validate_email(address, check_deliverability=False).normalized)
    except email_validator.EmailNotValidError as exc:
        raise FieldError("invalid_email", f"not a valid email address: {exc}") from None
