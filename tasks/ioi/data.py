"""IOI word lists and templates (data, from the public IOI implementations; see README.md)."""

from __future__ import annotations

BABA_TEMPLATES: tuple[str, ...] = (
    "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] had a lot of fun at the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] were working at the [PLACE]. [B] decided to give a [OBJECT] to [A]",
    "Then, [B] and [A] were thinking about going to the [PLACE]. [B] wanted to give a [OBJECT] to [A]",
    "Then, [B] and [A] had a long argument, and afterwards [B] said to [A]",
    "After [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to [A]",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give it to [A]",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give the [OBJECT] to [A]",
    "While [B] and [A] were working at the [PLACE], [B] gave a [OBJECT] to [A]",
    "While [B] and [A] were commuting to the [PLACE], [B] gave a [OBJECT] to [A]",
    "After the lunch, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Afterwards, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] had a long argument. Afterwards [B] said to [A]",
    "The [PLACE] [B] and [A] went to had a [OBJECT]. [B] gave it to [A]",
    "Friends [B] and [A] found a [OBJECT] at the [PLACE]. [B] gave it to [A]",
)  # fmt: skip
"""The 15 BABA templates of auto-circuit's ``ioi_generator.py`` (Redwood/ARENA ``ioi_dataset.py``).
ABBA versions swap the first clause's [B] and [A]."""

PLACES: tuple[str, ...] = (
    "store", "garden", "restaurant", "school", "hospital", "office", "house", "station",
)  # fmt: skip
OBJECTS: tuple[str, ...] = (
    "ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack",
)  # fmt: skip

WANG_NAMES: tuple[str, ...] = (
    "Michael", "Christopher", "Jessica", "Matthew", "Ashley", "Jennifer", "Joshua", "Amanda",
    "Daniel", "David", "James", "Robert", "John", "Joseph", "Andrew", "Ryan", "Brandon", "Jason",
    "Justin", "Sarah", "William", "Jonathan", "Stephanie", "Brian", "Nicole", "Nicholas",
    "Anthony", "Heather", "Eric", "Elizabeth", "Adam", "Megan", "Melissa", "Kevin", "Steven",
    "Thomas", "Timothy", "Christina", "Kyle", "Rachel", "Laura", "Lauren", "Amber", "Brittany",
    "Danielle", "Richard", "Kimberly", "Jeffrey", "Amy", "Crystal", "Michelle", "Tiffany",
    "Jeremy", "Benjamin", "Mark", "Emily", "Aaron", "Charles", "Rebecca", "Jacob", "Stephen",
    "Patrick", "Sean", "Erin", "Jamie", "Kelly", "Samantha", "Nathan", "Sara", "Dustin", "Paul",
    "Angela", "Tyler", "Scott", "Katherine", "Andrea", "Gregory", "Erica", "Mary", "Travis",
    "Lisa", "Kenneth", "Bryan", "Lindsey", "Kristen", "Jose", "Alexander", "Jesse", "Katie",
    "Lindsay", "Shannon", "Vanessa", "Courtney", "Christine", "Alicia", "Cody", "Allison",
    "Bradley", "Samuel",
)  # fmt: skip
"""The original Redwood/Wang et al. names (ACDC, EAP-IG)."""

ARENA_NAMES: tuple[str, ...] = (
    "Aaron", "Adam", "Alan", "Alex", "Alice", "Amy", "Anderson", "Andre", "Andrew", "Andy", "Anna",
    "Anthony", "Arthur", "Austin", "Blake", "Brandon", "Brian", "Carter", "Charles", "Charlie",
    "Christian", "Christopher", "Clark", "Cole", "Collins", "Connor", "Crew", "Crystal", "Daniel",
    "David", "Dean", "Edward", "Elizabeth", "Emily", "Eric", "Eva", "Ford", "Frank", "George",
    "Georgia", "Graham", "Grant", "Henry", "Ian", "Jack", "Jacob", "Jake", "James", "Jamie",
    "Jane", "Jason", "Jay", "Jennifer", "Jeremy", "Jessica", "John", "Jonathan", "Jordan",
    "Joseph", "Joshua", "Justin", "Kate", "Kelly", "Kevin", "Kyle", "Laura", "Leon", "Lewis",
    "Lisa", "Louis", "Luke", "Madison", "Marco", "Marcus", "Maria", "Mark", "Martin", "Mary",
    "Matthew", "Max", "Michael", "Michelle", "Morgan", "Patrick", "Paul", "Peter", "Prince",
    "Rachel", "Richard", "River", "Robert", "Roman", "Rose", "Ruby", "Russell", "Ryan", "Sarah",
    "Scott", "Sean", "Simon", "Stephen", "Steven", "Sullivan", "Taylor", "Thomas", "Tyler",
    "Victoria", "Warren", "William",
)  # fmt: skip
"""The ARENA name list used by auto-circuit."""

NAME_LISTS: dict[str, tuple[str, ...]] = {"wang": WANG_NAMES, "arena": ARENA_NAMES}

FILLER_WORDS: tuple[str, ...] = (
    "table", "window", "river", "book", "chair", "cloud", "paper", "door", "apple", "music",
    "street", "water", "light", "stone", "letter", "market", "horse", "bread", "glass", "money",
    "dinner", "train", "forest", "island", "garden", "summer", "winter", "coffee", "bridge", "phone",
)  # fmt: skip
"""Common non-name words; ``corruption: random_token`` puts one in the S2 slot."""

# --- The toy version (the zoo's word-level vocabulary, harness/models/toy_vocab.py): names,
# the natural PLACES and OBJECTS (each one toy word) and templates with punctuation split off.
TOY_NAMES: tuple[str, ...] = (
    "Mary", "John", "Alice", "Bob", "Tom", "Anna", "Kate", "Paul", "Sarah", "James", "Emma",
    "David", "Lucy", "Mark", "Laura", "Peter", "Rose", "Sam", "Jack", "Lisa", "Henry", "Clara",
    "Oscar", "Nina",
)  # fmt: skip
TOY_TEMPLATES: tuple[str, ...] = (
    "Then , [B] and [A] went to the [PLACE] . [B] gave a [OBJECT] to [A]",
    "After [B] and [A] went to the [PLACE] , [B] gave a [OBJECT] to [A]",
    "When [B] and [A] got a [OBJECT] at the [PLACE] , [B] decided to give it to [A]",
    "Friends [B] and [A] found a [OBJECT] at the [PLACE] . [B] gave it to [A]",
)
"""Toy BABA templates (a subset of the 15 IOI templates, punctuation split off as words)."""
