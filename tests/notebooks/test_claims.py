"""Every claim with a number is backed: the claims table in ``docs/claims/`` is complete.

A sentence of a lesson's prose (a markdown cell of a lesson or of a lab's master) that
states a quantity ("4x faster", "at least 80 %", "228 KiB of shared memory") or a speed
comparison ("faster", "an order of magnitude") is a claim. Each one has an entry in the
table, keyed by notebook, saying what backs it, exactly one of:

``assert``
    text of a check in that notebook's code (an ``assert``, a lab's ``check(...)``, a
    helper that raises), or ``tests/<file>.py::<test name>`` for a unit test that holds
    course code to the claim;
``printed``
    text of the code cell that prints, records or plots the measured value, for a claim
    that depends on the hardware (the prose must say so);
``reference``
    where a fact that no CPU can measure comes from: a datasheet, a specification, a
    paper, documentation (a ``course_utils/`` or ``data/`` path must exist).

The test fails on a claim without an entry (and prints a stub to paste), on an entry whose
claim is no longer in the notebook, and on an entry whose check or print is not in its
code. Matching ignores line breaks and runs of spaces. See docs/architecture.md.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import nbformat
import pytest
import yaml

from tests.conftest import REPO

CLAIMS_DIR = REPO / "docs" / "claims"
NOTEBOOKS = sorted(
    [*sorted((REPO / "lessons").rglob("*.ipynb")), *sorted((REPO / "labs" / "solutions")
                                                           .glob("*.ipynb"))])
NOTEBOOKS = [p for p in NOTEBOOKS if ".ipynb_checkpoints" not in p.parts]
IDS = [str(p.relative_to(REPO)) for p in NOTEBOOKS]

NUMBER = r"\d[\d,]*(?:\.\d+)?"
UNIT = (r"(?:x|×|%|times|ns|µs|us|ms|s|seconds?|minutes?|hours?|[KMGTP]i?B/s|[KMGTP]i?B"
        r"|bytes?|bits?|[GTPM]?FLOP/s|[GT]FLOPS|[KMGT]?FLOPs?|cycles?|registers?|threads?"
        r"|warps?|blocks?|SMs?|messages?|elements?)")
QUANTITY = re.compile(rf"(?<![\w.]){NUMBER}\s?{UNIT}(?![\w/])", re.IGNORECASE)
COMPARATIVE = re.compile(r"\b(faster|slower|twice|half as|halves|doubles|order of magnitude"
                         r"|within seconds)\b", re.IGNORECASE)
BACKINGS = ("assert", "printed", "reference")
CHECK_WORDS = re.compile(r"assert|check|raise|verify|compare|expect", re.IGNORECASE)
OUTPUT_WORDS = ("print(", "record(", "display(", ".show(", "plt.", "plots.", "table(")


def normalise(text: str) -> str:
    return " ".join(text.split())


def sentences(markdown: str) -> list[str]:
    """The sentences, list items and table rows of a markdown cell, whitespace collapsed."""
    markdown = re.sub(r"```.*?```", " ", markdown, flags=re.S)
    markdown = re.sub(r"<!--.*?-->", " ", markdown, flags=re.S)
    parts = re.split(r"(?<=[.!?;])\s+(?=[A-Z(`*_\"'])|\n\s*\n|\n(?=\s*(?:[-*+]|\d+\.)\s)"
                     r"|\n(?=\s*\|)", markdown)
    return [s for s in (normalise(p) for p in parts) if s]


def is_claim(sentence: str) -> bool:
    return bool(QUANTITY.search(sentence) or COMPARATIVE.search(sentence))


def claims_in(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [s for cell in nb.cells if cell.cell_type == "markdown"
            for s in sentences(cell.source) if is_claim(s)]


@cache
def table() -> dict[str, tuple[str, list[dict]]]:
    """Notebook path -> (the table file that lists it, its entries)."""
    merged: dict[str, tuple[str, list[dict]]] = {}
    for file in sorted(CLAIMS_DIR.glob("*.yml")):
        data = yaml.safe_load(file.read_text()) or {}
        assert isinstance(data, dict), f"{file.name}: a mapping of notebook -> claims"
        for notebook, entries in data.items():
            assert notebook not in merged, (
                f"{notebook} is listed in {merged[notebook][0]} and in {file.name}")
            merged[notebook] = (file.name, list(entries or []))
    return merged


def code_cells(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [normalise(c.source) for c in nb.cells if c.cell_type == "code"]


def entry_problems(path: Path, entry: dict, claims: list[str]) -> list[str]:
    """What is wrong with one table entry (an empty list when nothing is)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("claim"), str):
        return [f"entry {entry!r}: needs a 'claim' (text of the sentence)"]
    claim = normalise(entry["claim"])
    problems = []
    if not any(claim in s for s in claims):
        problems.append(f"claim {claim!r} is not in a numeric sentence of the notebook "
                        "(changed or removed? update the table)")
    kinds = [k for k in BACKINGS if k in entry]
    unknown = set(entry) - {"claim", "note", *BACKINGS}
    if len(kinds) != 1 or unknown:
        return [*problems, f"claim {claim!r}: needs exactly one of {BACKINGS}"
                           + (f", not {sorted(unknown)}" if unknown else "")]
    kind, value = kinds[0], entry[kinds[0]]
    if not isinstance(value, str) or not value.strip():
        return [*problems, f"claim {claim!r}: '{kind}' must be non-empty text"]
    value = normalise(value)
    if kind == "reference":
        local = re.match(r"(course_utils|data|lessons|docs)/\S+", value)
        if local and not (REPO / local.group(0).rstrip(".,;)")).exists():
            problems.append(f"claim {claim!r}: reference {local.group(0)} does not exist")
        return problems
    if kind == "assert" and value.startswith("tests/"):
        file, _, name = value.partition("::")
        test_file = REPO / file
        if not test_file.is_file() or not re.search(rf"def {re.escape(name)}\b",
                                                     test_file.read_text()):
            problems.append(f"claim {claim!r}: no test {value}")
        return problems
    cells = [c for c in code_cells(path) if value in c]
    if not cells:
        problems.append(f"claim {claim!r}: {kind} text {value!r} is not in the notebook's code")
    elif kind == "assert" and not CHECK_WORDS.search(value):
        problems.append(f"claim {claim!r}: {value!r} is not a check (assert, check(...))")
    elif kind == "printed" and not any(w in c for c in cells for w in OUTPUT_WORDS):
        problems.append(f"claim {claim!r}: the cell of {value!r} prints nothing")
    return problems


def test_the_detector_finds_claims_and_leaves_other_numbers():
    for claim in ("about 4x faster than the loop", "reaches 80 % of the peak",
                  "228 KiB of shared memory per SM", "a ring is slower here",
                  "3.35 TB/s of HBM3", "2(p - 1) steps of 8 messages"):
        assert is_claim(claim), claim
    for other in ("Lesson 07 shows the grid.", "Exercise 3: run it again.",
                  "See section 2.1 and arXiv 2003.10555.", "the `BLOCK_SIZE` knob"):
        assert not is_claim(other), other
    assert sentences("One claim: 2x faster. Another one.\n\n- a 5 % item\n| 3 ms | row |") == [
        "One claim: 2x faster.", "Another one.", "- a 5 % item", "| 3 ms | row |"]


def test_every_notebook_is_in_the_claims_table():
    listed = set(table())
    missing = [i for i in IDS if i not in listed]
    unknown = sorted(listed - set(IDS))
    assert not missing, f"notebooks without a claims entry in docs/claims/: {missing}"
    assert not unknown, f"docs/claims/ lists notebooks that do not exist: {unknown}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_claim_is_backed(path):
    rel = str(path.relative_to(REPO))
    file, entries = table().get(rel, ("(none)", []))
    claims = claims_in(path)
    problems = [p for entry in entries for p in entry_problems(path, entry, claims)]
    covered = [normalise(e["claim"]) for e in entries if isinstance(e, dict)
               and isinstance(e.get("claim"), str)]
    uncovered = [s for s in claims if not any(c in s for c in covered)]
    stub = "".join(f"  - claim: {s[:70]!r}\n    assert: ''\n" for s in uncovered)
    assert not problems and not uncovered, (
        f"{rel} (table docs/claims/{file}):\n" + "\n".join(problems)
        + (f"\n{len(uncovered)} claims without an entry; add them:\n{stub}" if uncovered
           else ""))
