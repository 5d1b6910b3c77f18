"""Landmark -> city facts for the natural-vocabulary factual-recall task."""

from __future__ import annotations

FACTS: tuple[tuple[str, str], ...] = (
    ("the Eiffel Tower", "Paris"),
    ("the Louvre", "Paris"),
    ("the Arc de Triomphe", "Paris"),
    ("the Colosseum", "Rome"),
    ("the Pantheon", "Rome"),
    ("the Trevi Fountain", "Rome"),
    ("Big Ben", "London"),
    ("Buckingham Palace", "London"),
    ("Westminster Abbey", "London"),
    ("the Tower of London", "London"),
    ("the Brandenburg Gate", "Berlin"),
    ("the Reichstag", "Berlin"),
    ("the Kremlin", "Moscow"),
    ("Red Square", "Moscow"),
    ("the Bolshoi Theatre", "Moscow"),
    ("the Acropolis", "Athens"),
    ("the Parthenon", "Athens"),
    ("the Sagrada Familia", "Barcelona"),
    ("the Prado Museum", "Madrid"),
    ("the Forbidden City", "Beijing"),
    ("Tiananmen Square", "Beijing"),
    ("the Sydney Opera House", "Sydney"),
    ("the Space Needle", "Seattle"),
    ("the Burj Khalifa", "Dubai"),
    ("the Hagia Sophia", "Istanbul"),
    ("the Blue Mosque", "Istanbul"),
    ("the Rijksmuseum", "Amsterdam"),
    ("the Charles Bridge", "Prague"),
    ("the Rialto Bridge", "Venice"),
    ("the Uffizi Gallery", "Florence"),
    ("the Ponte Vecchio", "Florence"),
    ("the Alhambra", "Granada"),
    ("the CN Tower", "Toronto"),
    ("the Atomium", "Brussels"),
    ("the White House", "Washington"),
    ("the Lincoln Memorial", "Washington"),
    ("the Willis Tower", "Chicago"),
    ("the Gateway of India", "Mumbai"),
    ("the Taj Mahal", "Agra"),
    ("Schonbrunn Palace", "Vienna"),
    ("the Egyptian Museum", "Cairo"),
    ("the Leaning Tower", "Pisa"),
)
"""(subject, city): well-known landmarks; the natural task keeps the cities that are one token
with a leading space."""

TEMPLATES: tuple[str, ...] = (
    "[S] is located in the city of",
    "[S] is in the city of",
    "Tourists travel to see [S] in the city of",
)
"""A subject at the start of a template is capitalised ("The Eiffel Tower is ...")."""

# --- The toy version (the zoo's word-level vocabulary, harness/models/toy_vocab.py): a memorised
# table of one-word landmarks and their cities.
TOY_LANDMARKS: dict[str, str] = {
    "Eiffel": "Paris", "Louvre": "Paris",
    "Colosseum": "Rome", "Vatican": "Rome",
    "Westminster": "London", "Thames": "London",
    "Reichstag": "Berlin", "Brandenburg": "Berlin",
    "Kremlin": "Moscow", "Bolshoi": "Moscow",
    "Acropolis": "Athens", "Parthenon": "Athens",
    "Prado": "Madrid", "Retiro": "Madrid",
    "Pyramids": "Cairo", "Sphinx": "Cairo",
    "Shibuya": "Tokyo", "Ginza": "Tokyo",
    "Hofburg": "Vienna", "Belvedere": "Vienna",
}  # fmt: skip
TOY_CITIES: tuple[str, ...] = tuple(dict.fromkeys(TOY_LANDMARKS.values()))
TOY_TEMPLATES: tuple[str, ...] = (
    "The [S] is in the city of",
    "The [S] is located in",
    "Tourists visit the [S] in",
)
