"""Deterministic generator of a realistic, messy contacts CSV for benchmarks.

    python benchmarks/generate.py OUT.csv --rows 1000000 [--seed 0]

or, from Python, ``generate(path, rows, seed=0)``. The same rows and seed always give the same
bytes. Rows are written as they are made (never the whole file in memory), about 127 bytes
each, so 1,000,000 rows make about 127 MB.

The mess is that of real CRM exports: quoted fields holding commas and quotes (and, rarely, a
newline), non-ASCII names, empty cells, US phones in several national formats (with area codes
``phonenumbers`` accepts) next to +44/+33/+49 international numbers, about 2 % invalid email
addresses, a few duplicate customer IDs (the later row wins), occasional time zones that are
not IANA names, and an Opt Out column spelt every way people spell booleans.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["HEADER", "generate"]

HEADER = [
    "Customer ID",
    "Email",
    "Phone",
    "First Name",
    "Last Name",
    "Time Zone",
    "Tags",
    "Opt Out",
    "City",
    "Notes",
]

FIRST_NAMES = [
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William",
    "Elizabeth", "David", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Charles", "Karen", "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Betty", "Mark", "Sandra",
    "Emma", "Olivia", "Noah", "Liam", "Sophia", "Ava", "Lucas", "Mia", "Ethan", "Chloe", "Anna",
    "José", "Zoë", "Łukasz", "伟", "María", "François", "Søren", "Björn", "Chloé", "Renée",
    "Jürgen", "Ana Sofía", "Mary Ann", "O'Neil", "Nguyễn", "Ayşe", "Dvořák", "Siobhán",
]  # fmt: skip

LAST_NAMES = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Clark", "Lewis",
    "Walker", "Hall", "Young", "Allen", "King", "Wright", "Scott", "Green", "Baker", "Adams",
    "García", "Müller", "Kowalski", "Wiśniewski", "李", "王", "Núñez", "Dubois", "Lefèvre",
    "O'Brien", "van der Berg", "Smith-Jones", "de la Cruz", "Østergaard", "Çelik", "Ångström",
]  # fmt: skip

CITIES = [
    "New York, NY", "Los Angeles, CA", "Chicago, IL", "Houston, TX", "Phoenix, AZ",
    "Philadelphia, PA", "San Antonio, TX", "San Diego, CA", "Dallas, TX", "Austin, TX",
    "Seattle", "Boston", "Denver", "Miami", "Atlanta", "Portland", "London", "Paris", "Berlin",
    "Kraków", "Zürich", "São Paulo", "Montréal", "München", "Köln", "Москва", "東京", "",
]  # fmt: skip

DOMAINS = [
    "gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "aol.com",
    "example.com", "acme-corp.com", "mail.example.org", "company.co.uk", "web.de", "orange.fr",
]  # fmt: skip

TIME_ZONES = [
    "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
    "america/new_york", "AMERICA/CHICAGO", "America/Phoenix", "Europe/London", "Europe/Paris",
    "Europe/Berlin", "UTC", "Asia/Tokyo",
]  # fmt: skip

#: Not IANA names: each one rejects its row (``invalid_timezone``).
BAD_TIME_ZONES = ["EST5", "Eastern", "PST", "GMT+1", "America/Springfield", "Europe/Pariss"]

TAGS = ["vip", "newsletter", "lead", "customer", "churned", "trial", "b2b", "b2c", "webinar", "partner"]

OPT_OUT = ["no", "no", "No", "N", "false", "FALSE", "0", "", "", "yes", "Y", "true", "1"]

NOTES = [
    "Prefers email, not phone",
    'Said "call me after 5pm"',
    "Met at trade show",
    "Referred by a friend; follow up in Q3",
    "Asked for a discount, pending approval",
    "Déjà vu: imported twice last year",
    "Left voicemail",
    "Interested in the premium plan",
    "Wrong number, check address",
    "Bounced once",
]

#: Area codes for which ``phonenumbers`` accepts any exchange 200-999 as a valid US number.
US_AREA_CODES = [
    201, 202, 203, 206, 212, 213, 214, 215, 216, 303, 305, 310, 312, 313, 404, 415, 503, 512,
    602, 612, 617, 646, 702, 713, 718, 773, 786, 818, 917, 919, 949, 972,
]  # fmt: skip

#: Bad addresses, about 2 % of rows: each rejects its row (``invalid_email``).
_BAD_EMAIL_SHAPES = ("{u}@", "{u}.{d}", "{u} at {d}", "{u}@@{d}", "@{d}", "{u}..x@{d}", "{u}@{d}.")

_BAD_EMAIL_RATE = 0.02
_DUPLICATE_RATE = 0.002
_BAD_TZ_RATE = 0.004
_NEWLINE_NOTE_RATE = 0.001


def _phone(rng: random.Random) -> str:
    """A valid phone number in one of the shapes exports hold; sometimes none at all."""
    r = rng.random()
    if r < 0.06:
        return ""
    if r < 0.80:
        area = rng.choice(US_AREA_CODES)
        exchange = rng.randint(200, 999)
        line = rng.randint(0, 9999)
        shape = rng.randrange(5)
        if shape == 0:
            return f"({area}) {exchange}-{line:04d}"
        if shape == 1:
            return f"{area}-{exchange}-{line:04d}"
        if shape == 2:
            return f"{area}.{exchange}.{line:04d}"
        if shape == 3:
            return f"+1 {area} {exchange} {line:04d}"
        return f"{area}{exchange}{line:04d}"
    if r < 0.87:
        if rng.random() < 0.5:
            return f"+44 20 7{rng.randint(0, 999):03d} {rng.randint(0, 9999):04d}"
        return f"+44 7{rng.choice('458')}{rng.randint(0, 99):02d} {rng.randint(0, 999999):06d}"
    if r < 0.94:
        # +33 1 (Paris) or +33 6 (mobile; 63x and 69x hold unassigned blocks, so avoided).
        lead = rng.choice(("1", "6"))
        head = rng.randint(0, 99) if lead == "1" else int(rng.choice("01245678")) * 10 + rng.randint(0, 9)
        pairs = " ".join(f"{rng.randint(0, 99):02d}" for _ in range(3))
        return f"+33 {lead} {head:02d} {pairs}"
    if rng.random() < 0.5:
        return f"+49 30 {rng.randint(0, 99_999_999):08d}"
    return f"+49 151 {rng.randint(0, 99_999_999):08d}"


def _email(rng: random.Random, first: str, last: str, n: int) -> str:
    r = rng.random()
    if r < 0.03:
        return ""
    base = f"{first}.{last}".lower().replace(" ", "").replace("'", "")
    if not base.isascii():
        base = f"user{n}"
    user = f"{base}{n % 1000}"
    domain = rng.choice(DOMAINS)
    if r < 0.03 + _BAD_EMAIL_RATE:
        return rng.choice(_BAD_EMAIL_SHAPES).format(u=user, d=domain)
    if rng.random() < 0.05:
        return f"  {user.upper()}@{domain.upper()} "
    return f"{user}@{domain}"


def _row(rng: random.Random, n: int) -> list[str]:
    duplicate = n > 100 and rng.random() < _DUPLICATE_RATE
    customer_id = f"C{rng.randint(1, n - 1):08d}" if duplicate else f"C{n:08d}"
    first = rng.choice(FIRST_NAMES)
    last = rng.choice(LAST_NAMES)
    r = rng.random()
    if r < _BAD_TZ_RATE:
        tz = rng.choice(BAD_TIME_ZONES)
    elif r < 0.35:
        tz = ""
    else:
        tz = rng.choice(TIME_ZONES)
    k = rng.choice((0, 0, 1, 1, 2, 3))
    sep = rng.choice((";", ",", "|", "; "))
    tags = sep.join(rng.sample(TAGS, k))
    city = rng.choice(CITIES)
    r = rng.random()
    if r < 0.35:
        notes = ""
    elif r < 0.35 + _NEWLINE_NOTE_RATE:
        notes = "Two-line note:\nsecond line, with a comma"
    else:
        notes = rng.choice(NOTES)
        if rng.random() < 0.58:
            notes += f" (ticket #{rng.randint(1000, 99999)}, agent {rng.choice(FIRST_NAMES)})"
    return [
        customer_id,
        _email(rng, first, last, n),
        _phone(rng),
        first if rng.random() > 0.01 else "",
        last if rng.random() > 0.01 else "",
        tz,
        tags,
        rng.choice(OPT_OUT),
        city,
        notes,
    ]


def generate(path: Path | str, rows: int, seed: int = 0) -> Path:
    """Write ``rows`` data rows (plus a header) to ``path``, streaming; the same seed gives the same bytes.

    The file is written under a temporary name and renamed into place when complete.
    """
    if rows < 0:
        msg = f"rows must be >= 0, got {rows}"
        raise ValueError(msg)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    rng = random.Random(seed)
    with partial.open("w", encoding="utf-8", newline="", buffering=1 << 20) as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(HEADER)
        chunk: list[list[str]] = []
        for n in range(1, rows + 1):
            chunk.append(_row(rng, n))
            if len(chunk) >= 10_000:
                writer.writerows(chunk)
                chunk.clear()
        writer.writerows(chunk)
    os.replace(partial, path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("out", type=Path, help="the CSV file to write")
    parser.add_argument("--rows", type=int, default=1_000_000, help="data rows (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    path = generate(args.out, args.rows, seed=args.seed)
    size = path.stat().st_size
    per_row = size / args.rows if args.rows else 0.0
    print(f"{path}: {args.rows:,} rows, {size:,} bytes ({per_row:.1f} bytes/row)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
