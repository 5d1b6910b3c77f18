"""Greater-Than nouns (Hanna et al. 2023; auto-circuit's list, "statute" for "stature")."""

from __future__ import annotations

NOUNS: tuple[str, ...] = (
    "abduction", "accord", "affair", "agreement", "appraisal", "assaults", "assessment", "attack",
    "attempts", "campaign", "captivity", "case", "challenge", "chaos", "clash", "collaboration",
    "coma", "competition", "confrontation", "consequence", "conspiracy", "construction",
    "consultation", "contact", "contract", "convention", "cooperation", "custody", "deal",
    "decline", "decrease", "demonstrations", "development", "disagreement", "disorder",
    "dispute", "domination", "dynasty", "effect", "effort", "employment", "endeavor",
    "engagement", "epidemic", "evaluation", "exchange", "existence", "expansion", "expedition",
    "experiments", "fall", "fame", "flights", "friendship", "growth", "hardship", "hostility",
    "illness", "impact", "imprisonment", "improvement", "incarceration", "increase", "insurgency",
    "invasion", "investigation", "journey", "kingdom", "marriage", "modernization", "negotiation",
    "notoriety", "obstruction", "operation", "order", "outbreak", "outcome", "overhaul",
    "patrols", "pilgrimage", "plague", "plan", "practice", "process", "program", "progress",
    "project", "pursuit", "quest", "raids", "reforms", "reign", "relationship", "retaliation",
    "riot", "rise", "rivalry", "romance", "rule", "sanctions", "shift", "siege", "slump",
    "statute", "stint", "strikes", "study", "test", "testing", "tests", "therapy", "tour",
    "tradition", "treaty", "trial", "trip", "unemployment", "voyage", "warfare", "work",
)  # fmt: skip

TEMPLATES: dict[str, str] = {
    "canonical": "The [NOUN] lasted from the year [XX][YY] to the year [XX]",
    "acdc": "The [NOUN] lasted from the year [XX][YY] to [XX]",
}
"""``canonical``: EAP-IG's ``greater_than_data.csv``; ``acdc``: ACDC and auto-circuit (no second
"the year")."""

# --- The toy version (the zoo's word-level vocabulary, harness/models/toy_vocab.py): two-digit
# year tokens as words ("17 32"), nouns and templates.
TOY_DIGITS: tuple[str, ...] = tuple(f"{i:02d}" for i in range(100))
TOY_NOUNS: tuple[str, ...] = (
    "war", "reign", "trip", "study", "siege", "project", "journey", "treaty", "plague", "voyage",
    "trial", "tour",
)  # fmt: skip
TOY_TEMPLATES: dict[str, str] = {
    "canonical": "The [NOUN] lasted from the year [XX] [YY] to the year [XX]",
    "acdc": "The [NOUN] lasted from the year [XX] [YY] to [XX]",
}
