"""Deterministic synthetic directories, one per tenant, computed lazily user by user.

User `i` of a tenant is a pure function of the tenant's seed and `i`, so a 100,000-user directory costs
no memory: only mutations (updates, removals, additions) are stored, next to a change log with a
monotonically increasing `version` that delta tokens refer to ("changes since version v").

Invertible by construction, so nothing needs an index:
- `id` (a random-looking GUID) carries `i` through a keyed Feistel permutation;
- `userPrincipalName` is `first.last[N]@domain`, unique because name pairs are dealt out by an
  affine permutation over all (first, last) pairs of each nationality, round after round (N = round).
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import unicodedata
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator

DEFAULT_SIZE = 250

# Properties Graph returns for GET /users without $select (MICROSOFT.md), in Graph's order.
DEFAULT_PROPERTIES = (
    "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
    "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id",
)
# Everything the fake can return with $select; anything else is a 400 like Graph's.
KNOWN_PROPERTIES = DEFAULT_PROPERTIES + (
    "department", "companyName", "city", "country", "usageLocation", "accountEnabled",
    "employeeId", "faxNumber", "otherMails", "streetAddress", "postalCode", "state", "userType",
)
MUTABLE_PROPERTIES = frozenset(KNOWN_PROPERTIES) - {"id"}

REMOVAL_REASONS = ("deleted", "changed")  # permanent / soft-deleted (restorable)


# --------------------------------------------------------------------------------------------------
# Name pools. Surnames are disjoint across nationalities (after transliteration), so a UPN names
# its nationality unambiguously; checked at import.
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Nation:
    code: str  # ISO 3166 region of phones and offices
    language: str
    first: tuple[str, ...]
    last: tuple[str, ...]
    offices: tuple[tuple[str, str], ...]  # (officeLocation, city)


_NATIONS: tuple[_Nation, ...] = (
    _Nation(
        "DE", "de-DE",
        ("Anna", "Lena", "Lea", "Hannah", "Laura", "Julia", "Sarah", "Katharina", "Sophie", "Marie",
         "Johanna", "Clara", "Charlotte", "Emilia", "Franziska", "Sabine", "Petra", "Claudia", "Andrea",
         "Ute", "Birgit", "Jana", "Nina", "Miriam", "Jürgen", "Lukas", "Jonas", "Leon", "Felix",
         "Maximilian", "Paul", "Tobias", "Florian", "Sebastian", "Stefan", "Thomas", "Michael",
         "Andreas", "Christian", "Markus", "Matthias", "Daniel", "Alexander", "Tim", "Jan", "Niklas",
         "Moritz", "Björn", "Jörg", "Uwe", "Klaus", "Dieter", "Ralf", "Sven", "Till", "Özlem", "Mehmet"),
        ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
         "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
         "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann", "Hartmann", "Lange", "Schmitt",
         "Werner", "Schmitz", "Krause", "Meier", "Lehmann", "Schmid", "Schulze", "Maier", "Köhler",
         "Herrmann", "König", "Walter", "Mayer", "Huber", "Kaiser", "Fuchs", "Peters", "Lang", "Scholz",
         "Möller", "Weiß", "Jung", "Hahn", "Schubert", "Vogel", "Friedrich", "Keller", "Günther",
         "Berger", "Winkler", "Roth", "Beck", "Lorenz", "Baumann", "Albrecht", "Schuster", "Böhm",
         "Winter", "Kraus", "Yılmaz", "Demir"),
        (("Berlin", "Berlin"), ("Berlin, Haus 2", "Berlin"), ("München", "München"),
         ("HQ München / 3. OG", "München"), ("Hamburg", "Hamburg"), ("Hamburg, Raum 4.12", "Hamburg"),
         ("Frankfurt am Main", "Frankfurt am Main"), ("Köln", "Köln"), ("Stuttgart", "Stuttgart"),
         ("Düsseldorf", "Düsseldorf"), ("Leipzig", "Leipzig"), ("Homeoffice", "Berlin")),
    ),
    _Nation(
        "GB", "en-GB",
        ("Oliver", "George", "Harry", "Jack", "Charlie", "James", "William", "Henry", "Oscar", "Amelia",
         "Olivia", "Isla", "Emily", "Poppy", "Ava", "Isabella", "Jessica", "Lily", "Sophie", "Grace",
         "Chloe", "Eleanor", "Harriet", "Alice", "Rhys", "Callum", "Fiona", "Siobhan", "Aidan", "Priya"),
        ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson",
         "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood", "Jackson",
         "Clarke", "Hughes", "Edwards", "Turner", "Patel", "Khan", "Lewis", "Harris", "Cooper", "Ward",
         "Morris", "O'Brien", "MacDonald", "Campbell", "Stewart", "Murphy"),
        (("London", "London"), ("London, 2nd floor", "London"), ("Manchester", "Manchester"),
         ("Edinburgh", "Edinburgh")),
    ),
    _Nation(
        "FR", "fr-FR",
        ("Camille", "Léa", "Manon", "Chloé", "Inès", "Jade", "Louise", "Zoé", "Juliette", "Margaux",
         "Élodie", "Aurélie", "Céline", "Mathilde", "Hugo", "Lucas", "Louis", "Gabriel", "Arthur", "Jules",
         "Théo", "Raphaël", "Nathan", "Antoine", "Mathieu", "Julien", "Nicolas", "Guillaume", "François",
         "Benoît"),
        ("Martin", "Bernard", "Dubois", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau",
         "Simon", "Laurent", "Lefebvre", "Michel", "David", "Bertrand", "Roux", "Vincent", "Fournier",
         "Morel", "Girard", "André", "Lefèvre", "Mercier", "Dupont", "Lambert", "Bonnet", "Fontaine",
         "Chevalier", "Rousseau", "Blanc", "Guérin", "Faure"),
        (("Paris", "Paris"), ("Paris La Défense", "Paris"), ("Lyon", "Lyon")),
    ),
    _Nation(
        "IT", "it-IT",
        ("Giulia", "Francesca", "Chiara", "Sara", "Martina", "Alessia", "Federica", "Valentina", "Elisa",
         "Silvia", "Giorgia", "Aurora", "Marco", "Alessandro", "Lorenzo", "Matteo", "Andrea", "Francesco",
         "Luca", "Davide", "Riccardo", "Simone", "Federico", "Gabriele", "Stefano", "Giuseppe", "Antonio",
         "Paolo"),
        ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci", "Marino",
         "Greco", "Bruno", "Gallo", "Conti", "De Luca", "Mancini", "Costa", "Giordano", "Rizzo",
         "Lombardi", "Moretti", "Barbieri", "Fontana", "Santoro", "Mariani", "Rinaldi", "Caruso",
         "Ferrara", "Galli", "Martini", "Leone"),
        (("Milano", "Milano"), ("Roma", "Roma")),
    ),
    _Nation(
        "ES", "es-ES",
        ("Lucía", "Sofía", "María", "Paula", "Daniela", "Valeria", "Alba", "Carmen", "Elena", "Pilar",
         "Mateo", "Martín", "Pablo", "Álvaro", "Alejandro", "Diego", "Javier", "Sergio", "Adrián",
         "Manuel", "Iker", "Jorge", "Raúl", "Íñigo", "Nuria"),
        ("García", "Rodríguez", "González", "Fernández", "López", "Martínez", "Sánchez", "Pérez",
         "Gómez", "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno", "Muñoz", "Álvarez", "Romero",
         "Alonso", "Gutiérrez", "Navarro", "Torres", "Domínguez", "Vázquez", "Ramos", "Gil", "Ramírez",
         "Serrano", "Blanco", "Molina", "Castro", "Ortega"),
        (("Madrid", "Madrid"), ("Barcelona", "Barcelona")),
    ),
    _Nation(
        "NL", "nl-NL",
        ("Daan", "Sem", "Bram", "Thijs", "Jesse", "Ruben", "Sander", "Joost", "Pieter", "Emma", "Tess",
         "Sanne", "Fleur", "Lotte", "Anouk", "Femke", "Eva", "Noor", "Iris", "Maartje", "Willemijn",
         "Koen"),
        ("de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Janssen", "Visser",
         "Smit", "Meijer", "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Hendriks", "van Leeuwen",
         "Dekker", "Brouwer", "de Wit", "Dijkstra", "Smits", "de Graaf", "van der Meer", "Kok",
         "Verhoeven", "Vermeulen"),
        (("Amsterdam", "Amsterdam"), ("Utrecht", "Utrecht")),
    ),
    _Nation(
        "PL", "pl-PL",
        ("Zofia", "Zuzanna", "Maja", "Hanna", "Aleksandra", "Natalia", "Wiktoria", "Agnieszka",
         "Katarzyna", "Małgorzata", "Magdalena", "Jakub", "Antoni", "Szymon", "Franciszek", "Filip",
         "Aleksander", "Mikołaj", "Wojciech", "Piotr", "Krzysztof", "Tomasz", "Paweł", "Łukasz",
         "Michał", "Marcin"),
        ("Nowak", "Kowalczyk", "Wójcik", "Kamiński", "Lewandowski", "Zieliński", "Szymański", "Woźniak",
         "Dąbrowski", "Kozłowski", "Jankowski", "Mazur", "Wojciechowski", "Kwiatkowski", "Krawczyk",
         "Kaczmarek", "Piotrowski", "Grabowski", "Zając", "Pawłowski", "Michalski", "Król", "Wieczorek",
         "Jabłoński", "Wróbel", "Majewski", "Olszewski"),
        (("Warszawa", "Warszawa"), ("Kraków", "Kraków")),
    ),
    _Nation(
        "SE", "sv-SE",
        ("Alice", "Maja", "Elsa", "Astrid", "Wilma", "Freja", "Saga", "Ebba", "Linnea", "Ingrid", "Karin",
         "Oscar", "William", "Liam", "Hugo", "Elias", "Axel", "Olle", "Nils", "Erik", "Lars", "Magnus",
         "Björn", "Anders", "Johan"),
        ("Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson", "Persson",
         "Svensson", "Gustafsson", "Pettersson", "Jonsson", "Jansson", "Hansson", "Bengtsson",
         "Lindberg", "Jakobsson", "Magnusson", "Lindström", "Lindqvist", "Lindgren", "Berg", "Axelsson",
         "Bergström", "Lundberg", "Lundgren", "Åberg", "Holm", "Sandberg"),
        (("Stockholm", "Stockholm"), ("Göteborg", "Göteborg")),
    ),
    _Nation(
        "US", "en-US",
        ("Michael", "Jennifer", "David", "Christopher", "Matthew", "Ashley", "Joshua", "Amanda", "Andrew",
         "Brittany", "Ryan", "Megan", "Tyler", "Lauren", "Kevin", "Nicole", "Brian", "Stephanie", "Jason",
         "Rachel", "Justin", "Heather", "Brandon", "Kimberly"),
        ("Miller", "Davis", "Anderson", "Moore", "Lee", "Clark", "Young", "Allen", "King", "Scott", "Hill",
         "Adams", "Baker", "Nelson", "Carter", "Mitchell", "Parker", "Collins", "Morgan", "Reed",
         "Bailey", "Bell", "Kelly", "Howard", "Sullivan", "Russell", "Griffin", "Hayes", "Myers", "Ford",
         "Hamilton", "Graham"),
        (("Redmond", "Redmond"), ("Seattle", "Seattle"), ("New York", "New York")),
    ),
)

_JOB_TITLES = (
    "Software Engineer", "Senior Software Engineer", "Product Manager", "Sales Manager",
    "Account Executive", "Key Account Manager", "HR Business Partner", "Controller", "Data Analyst",
    "IT Administrator", "Office Manager", "Marketing Specialist", "Consultant", "Senior Consultant",
    "Head of Operations", "Chief Financial Officer", "Projektleiter", "Projektleiterin",
    "Vertriebsmitarbeiterin", "Sachbearbeiter Einkauf", "Teamleitung Kundenservice", "Werkstudent",
    "Geschäftsführer", "Buchhalterin", "Chef de projet", "Responsabile commerciale",
    "Ingeniera de software", "Accountmanager", "Kierownik projektu", "Systemutvecklare",
)
_DEPARTMENTS = (
    "Sales", "Marketing", "Finance", "Human Resources", "IT", "Engineering", "Operations",
    "Customer Service", "Legal", "Procurement", "Research & Development", "Logistics", "Vertrieb",
    "Einkauf", "Buchhaltung", "Geschäftsführung",
)
_COMPANY_PREFIX = ("Nordwind", "Alpenglanz", "Rheinblick", "Hanse", "Kontorhaus", "Blauwal",
                   "Lindwurm", "Sonnenhof", "Falkenstein", "Eichenlaub", "Bernstein", "Seeadler")
_COMPANY_SUFFIX = ("Logistik GmbH", "Systems AG", "Consulting GmbH & Co. KG", "Handels GmbH",
                   "Software SE", "Technik GmbH", "Medien GmbH", "Europe B.V.")
_INVALID_NUMBERS = ("12345", "+49 123", "0000 000000", "n/a", "tbd", "+49 30", "ext. 4711",
                    "0800-CALL-NOW", "+1 (555) 012", "+44 20 7946 09585 99", "-", "+33 0")


def transliterate(text: str) -> str:
    """ASCII form of a name for addresses: umlauts as 'ae' etc., accents dropped, no spaces."""
    special = {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "ae", "Ö": "oe", "Ü": "ue", "ł": "l",
               "Ł": "l", "ø": "o", "æ": "ae", "å": "a", "Å": "a", "ı": "i"}
    out = "".join(special.get(ch, ch) for ch in text)
    out = unicodedata.normalize("NFKD", out).encode("ascii", "ignore").decode()
    return "".join(ch for ch in out.lower() if ch.isalnum())


@dataclass(frozen=True)
class _Pools:
    nations: tuple[_Nation, ...]
    offsets: tuple[int, ...]  # first combo index of each nation
    total: int  # number of (first, last) combos over all nations
    by_last: dict[str, tuple[int, int]]  # transliterated surname -> (nation index, surname index)
    first_index: tuple[dict[str, int], ...]  # per nation: transliterated first name -> index


def _build_pools() -> _Pools:
    offsets, total, by_last, first_index = [], 0, {}, []
    for n, nation in enumerate(_NATIONS):
        offsets.append(total)
        total += len(nation.first) * len(nation.last)
        firsts: dict[str, int] = {}
        for f, name in enumerate(nation.first):
            key = transliterate(name)
            if key in firsts:
                raise AssertionError(f"first names collide in {nation.code}: {name}")
            firsts[key] = f
        first_index.append(firsts)
        for s, name in enumerate(nation.last):
            key = transliterate(name)
            if key in by_last:
                raise AssertionError(f"surname {name!r} collides across nations")
            by_last[key] = (n, s)
    return _Pools(_NATIONS, tuple(offsets), total, by_last, tuple(first_index))


_POOLS = _build_pools()


# --------------------------------------------------------------------------------------------------
# Phone numbers in national habits. Most are valid numbers of their country; a few are not.
# --------------------------------------------------------------------------------------------------
def _digits(rng: random.Random, count: int) -> str:
    return str(rng.randrange(10**count)).zfill(count)


def _de_mobile(rng: random.Random) -> str:
    prefix = rng.choice(("151", "152", "157", "159", "160", "162", "170", "171", "172", "175", "176",
                         "177", "178", "179"))
    rest = _digits(rng, 8 if prefix.startswith("15") else rng.choice((7, 8)))
    rest = str(rng.randint(1, 9)) + rest[1:]
    return rng.choice((
        f"0{prefix} {rest}", f"+49 {prefix} {rest}", f"+49 (0){prefix} {rest}", f"0{prefix}-{rest}",
        f"+49{prefix}{rest}", f"0{prefix} {rest[:3]} {rest[3:]}",
    ))


def _de_business(rng: random.Random) -> str:
    area = rng.choice(("30", "30", "89", "89", "40", "69", "221", "711", "211", "341"))
    sub = str(rng.randint(2, 9)) + _digits(rng, 6 if len(area) == 2 else 5)
    ext = str(rng.randint(10, 99))
    return rng.choice((
        f"+49 {area} {sub}", f"0{area}/{sub}", f"0{area} {sub}-{ext}", f"(0{area}) {sub}",
        f"+49 (0){area} {sub[:4]} {sub[4:]}", f"+49 {area} {sub}-0", f"0{area} {sub}",
    ))


def _gb_mobile(rng: random.Random) -> str:
    rest = str(rng.randint(4, 9)) + _digits(rng, 8)
    return rng.choice((f"07{rest[:3]} {rest[3:]}", f"+44 7{rest[:3]} {rest[3:]}", f"+447{rest}"))


def _gb_business(rng: random.Random) -> str:
    city = rng.choice(("20 7", "20 3", "161 4", "131 2"))
    if city.startswith("20"):
        sub = _digits(rng, 3) + " " + _digits(rng, 4)
        return rng.choice((f"+44 {city}{sub}", f"0{city}{sub}"))
    sub = _digits(rng, 2) + " " + _digits(rng, 4)
    return rng.choice((f"+44 {city}{sub}", f"0{city}{sub}"))


def _pairs(rng: random.Random, count: int) -> str:
    return " ".join(_digits(rng, 2) for _ in range(count))


def _fr_mobile(rng: random.Random) -> str:
    lead = rng.choice(("6", "7"))
    body = _pairs(rng, 4)
    return rng.choice((f"0{lead} {body}", f"+33 {lead} {body}", f"0{lead}.{body.replace(' ', '.')}"))


def _fr_business(rng: random.Random) -> str:
    lead = rng.choice(("1", "1", "4"))
    body = f"{rng.randint(40, 79)} {_pairs(rng, 3)}"
    return rng.choice((f"+33 {lead} {body}", f"0{lead} {body}"))


def _it_mobile(rng: random.Random) -> str:
    lead = rng.choice(("320", "328", "333", "338", "347", "348", "366", "380", "391"))
    rest = _digits(rng, 7)
    return rng.choice((f"+39 {lead} {rest[:3]} {rest[3:]}", f"{lead} {rest}", f"+39{lead}{rest}"))


def _it_business(rng: random.Random) -> str:
    area = rng.choice(("02", "06"))
    rest = _digits(rng, 8)
    return rng.choice((f"+39 {area} {rest[:4]} {rest[4:]}", f"{area} {rest}"))


def _es_mobile(rng: random.Random) -> str:
    rest = rng.choice("67") + _digits(rng, 8)
    return rng.choice((f"+34 {rest[:3]} {rest[3:5]} {rest[5:7]} {rest[7:]}", f"{rest[:3]} {rest[3:6]} {rest[6:]}"))


def _es_business(rng: random.Random) -> str:
    rest = rng.choice(("91", "93")) + str(rng.randint(1, 9)) + _digits(rng, 6)
    return rng.choice((f"+34 {rest[:2]} {rest[2:5]} {rest[5:7]} {rest[7:]}", f"{rest[:3]} {rest[3:6]} {rest[6:]}"))


def _nl_mobile(rng: random.Random) -> str:
    rest = str(rng.randint(1, 9)) + _digits(rng, 7)
    return rng.choice((f"06 {rest}", f"+31 6 {rest}", f"06-{rest}"))


def _nl_business(rng: random.Random) -> str:
    area = rng.choice(("20", "30"))
    rest = str(rng.randint(2, 8)) + _digits(rng, 6)
    return rng.choice((f"+31 {area} {rest[:3]} {rest[3:]}", f"0{area}-{rest}"))


def _pl_mobile(rng: random.Random) -> str:
    rest = rng.choice(("50", "51", "53", "60", "66", "69", "72", "78", "79", "88")) + _digits(rng, 7)
    return rng.choice((f"+48 {rest[:3]} {rest[3:6]} {rest[6:]}", f"{rest[:3]} {rest[3:6]} {rest[6:]}"))


def _pl_business(rng: random.Random) -> str:
    area = rng.choice(("22", "12"))
    rest = str(rng.randint(2, 7)) + _digits(rng, 6)
    return rng.choice((f"+48 {area} {rest[:3]} {rest[3:5]} {rest[5:]}", f"{area} {rest}"))


def _se_mobile(rng: random.Random) -> str:
    lead = rng.choice(("70", "72", "73", "76", "79"))
    rest = _digits(rng, 7)
    return rng.choice((f"0{lead}-{rest[:3]} {rest[3:5]} {rest[5:]}", f"+46 {lead} {rest[:3]} {rest[3:5]} {rest[5:]}"))


def _se_business(rng: random.Random) -> str:
    if rng.random() < 0.6:
        rest = str(rng.randint(5, 7)) + _digits(rng, 7)
        return rng.choice((f"08-{rest[:3]} {rest[3:6]} {rest[6:]}", f"+46 8 {rest[:3]} {rest[3:6]} {rest[6:]}"))
    rest = str(rng.randint(3, 7)) + _digits(rng, 6)
    return f"031-{rest[:3]} {rest[3:5]} {rest[5:]}"


def _us_number(rng: random.Random) -> str:
    area = rng.choice(("425", "206", "212", "646", "415"))
    if rng.random() < 0.6:  # the 555-01xx fictional range, as in Microsoft's own samples
        line = "01" + _digits(rng, 2)
        exchange = "555"
    else:
        exchange = str(rng.randint(2, 9)) + _digits(rng, 2)
        line = _digits(rng, 4)
    return rng.choice((f"{area}-{exchange}-{line}", f"+1 {area} {exchange} {line}",
                       f"({area}) {exchange}-{line}", f"+1 ({area}) {exchange}-{line}"))


_PHONES = {
    "DE": (_de_mobile, _de_business), "GB": (_gb_mobile, _gb_business),
    "FR": (_fr_mobile, _fr_business), "IT": (_it_mobile, _it_business),
    "ES": (_es_mobile, _es_business), "NL": (_nl_mobile, _nl_business),
    "PL": (_pl_mobile, _pl_business), "SE": (_se_mobile, _se_business),
    "US": (_us_number, _us_number),
}
_COUNTRY_NAMES = {"DE": "Germany", "GB": "United Kingdom", "FR": "France", "IT": "Italy", "ES": "Spain",
                  "NL": "Netherlands", "PL": "Poland", "SE": "Sweden", "US": "United States"}


# --------------------------------------------------------------------------------------------------
# Identity arithmetic
# --------------------------------------------------------------------------------------------------
_MASK31 = (1 << 31) - 1
_MASK62 = (1 << 62) - 1


def _feistel(key: bytes, value: int, decrypt: bool = False) -> int:
    """A keyed permutation of 62-bit integers (4-round Feistel network on two 31-bit halves)."""
    left, right = value >> 31, value & _MASK31
    rounds = range(3, -1, -1) if decrypt else range(4)
    for r in rounds:
        if decrypt:
            left, right = right ^ _round(key, r, left), left
        else:
            left, right = right, left ^ _round(key, r, right)
    return (left << 31) | right


def _round(key: bytes, r: int, half: int) -> int:
    digest = hashlib.blake2b(half.to_bytes(4, "big"), digest_size=4, key=key, person=bytes([r]) * 8).digest()
    return int.from_bytes(digest, "big") & _MASK31


def tenant_seed(tenant_id: str, salt: str = "") -> bytes:
    return hashlib.blake2b(f"{tenant_id.lower()}|{salt}".encode(), digest_size=32).digest()


# --------------------------------------------------------------------------------------------------
# The directory
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    version: int
    index: int
    kind: str  # "update" | "remove" | "add" | "restore"
    fields: tuple[str, ...] = ()


@dataclass
class ChangeItem:
    """One entry of an incremental delta round, resolved against the current state."""

    index: int
    removed: str | None  # removal reason, or None
    full: bool  # send every selected property (added / restored)
    fields: frozenset[str] = field(default_factory=frozenset)  # changed properties (updates)


class Directory:
    """A tenant's synthetic directory: users computed from (seed, index), plus stored mutations."""

    def __init__(self, tenant_id: str, size: int = DEFAULT_SIZE, salt: str = "") -> None:
        if size < 0 or size > 10_000_000:
            raise ValueError("size must be between 0 and 10,000,000")
        self.tenant_id = tenant_id.lower()
        self.size = size  # generated users; additions come after them
        self.salt = salt
        self.seed = tenant_seed(self.tenant_id, salt)
        self.generation = uuid.uuid4().hex[:12]  # changes when the directory is replaced
        self._feistel_key = self.seed[:16]
        seed_int = int.from_bytes(self.seed, "big")
        total = _POOLS.total
        a = (seed_int >> 64) % total or 1
        while math.gcd(a, total) != 1:
            a += 1
        self._perm_a, self._perm_b = a, (seed_int >> 128) % total
        self._perm_a_inv = pow(a, -1, total)
        company_rng = random.Random(self.seed)
        prefix = company_rng.choice(_COMPANY_PREFIX)
        self.company = f"{prefix} {company_rng.choice(_COMPANY_SUFFIX)}"
        self.domain = f"{transliterate(prefix)}-{self.tenant_id[:4]}.example"
        self._lock = threading.RLock()
        self._added = 0
        self._overrides: dict[int, dict[str, Any]] = {}
        self._removed: dict[int, str] = {}
        self._upn_overrides: dict[str, int] = {}
        self._log: list[Change] = []
        self.version = 0

    # ---- reading ---------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        """Number of indices ever allocated (generated + added), including removed users."""
        return self.size + self._added

    @property
    def live_count(self) -> int:
        with self._lock:
            return self.total - len(self._removed)

    def user(self, index: int) -> dict[str, Any] | None:
        """Current state of user `index` with every known property, or None if removed/absent."""
        with self._lock:
            if index < 0 or index >= self.total or index in self._removed:
                return None
            override = self._overrides.get(index)
        user = self.generate(index)
        if override:
            user.update(override)
        return user

    def removal_reason(self, index: int) -> str | None:
        return self._removed.get(index)

    def iter_users(self) -> Iterator[dict[str, Any]]:
        for index in range(self.total):
            user = self.user(index)
            if user is not None:
                yield user

    def user_id(self, index: int) -> str:
        head = hashlib.blake2b(index.to_bytes(8, "big"), digest_size=8, key=self.seed).digest()
        tail = _feistel(self._feistel_key, index) | (0b10 << 62)  # RFC 4122 variant bits
        raw = bytearray(head + tail.to_bytes(8, "big"))
        raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
        return str(uuid.UUID(bytes=bytes(raw)))

    def index_of(self, user_id: str) -> int | None:
        """Index of the user with this id (live or removed), or None if it is not one of ours."""
        try:
            raw = uuid.UUID(str(user_id)).bytes
        except ValueError:
            return None
        index = _feistel(self._feistel_key, int.from_bytes(raw[8:], "big") & _MASK62, decrypt=True)
        if index >= self.total or self.user_id(index) != str(uuid.UUID(bytes=raw)):
            return None
        return index

    def index_of_upn(self, upn: str) -> int | None:
        """Index of the live user whose userPrincipalName is `upn` (case-insensitive), or None."""
        upn = upn.strip().lower()
        with self._lock:
            if upn in self._upn_overrides:
                return self._upn_overrides[upn]
        local, _, domain = upn.partition("@")
        if domain != self.domain or "." not in local:
            return None
        first, _, last = local.partition(".")
        digits = len(last) - len(last.rstrip("0123456789"))
        round_no = 0
        if digits:
            round_no = int(last[-digits:]) - 1
            last = last[:-digits]
            if round_no < 1:
                return None
        hit = _POOLS.by_last.get(last)
        if hit is None:
            return None
        n, s = hit
        f = _POOLS.first_index[n].get(first)
        if f is None:
            return None
        combo = _POOLS.offsets[n] + f * len(_POOLS.nations[n].last) + s
        index = round_no * _POOLS.total + (self._perm_a_inv * (combo - self._perm_b)) % _POOLS.total
        user = self.user(index)
        if user is None or user["userPrincipalName"].lower() != upn:
            return None
        return index

    def generate(self, index: int) -> dict[str, Any]:
        """User `index` as generated (before mutations): a pure function of (seed, index)."""
        round_no, slot = divmod(index, _POOLS.total)
        combo = (self._perm_a * slot + self._perm_b) % _POOLS.total
        n = _nation_of(combo)
        nation = _POOLS.nations[n]
        f, s = divmod(combo - _POOLS.offsets[n], len(nation.last))
        given, surname = nation.first[f], nation.last[s]
        suffix = str(round_no + 1) if round_no else ""
        local = f"{_ascii(given)}.{_ascii(surname)}{suffix}"
        upn = f"{local}@{self.domain}"

        rng = random.Random(hashlib.blake2b(index.to_bytes(8, "big"), digest_size=16, key=self.seed).digest())
        roll = rng.random
        # Most people sit in an office of their own country; some abroad.
        office_nation = nation if roll() < 0.85 else _POOLS.nations[rng.randrange(len(_POOLS.nations))]
        office, city = rng.choice(office_nation.offices)
        mobile_fn, business_fn = _PHONES[office_nation.code]

        display = f"{given} {surname}"
        style = roll()
        if style < 0.06 and nation.code == "DE":
            display = f"{surname}, {given}"
        elif style < 0.09:
            display = f"Dr. {given} {surname}"
        elif style < 0.11:
            display = f"{given} {surname} (extern)" if nation.code == "DE" else f"{given} {surname} (Contractor)"

        mobile: str | None
        r = roll()
        mobile = None if r < 0.18 else (rng.choice(_INVALID_NUMBERS) if r < 0.22 else mobile_fn(rng))
        r = roll()
        if r < 0.22:
            business: list[str] = []
        elif r < 0.26:
            business = [rng.choice(_INVALID_NUMBERS)]
        elif r < 0.31:
            business = [business_fn(rng), business_fn(rng)]
        else:
            business = [business_fn(rng)]

        names_missing = roll() < 0.03
        company = self.company
        r = roll()
        if r < 0.10:
            company = None
        elif r < 0.14:
            company = f"{self.company.split(' ')[0]} {office_nation.code} Services"
        return {
            "businessPhones": business,
            "displayName": display,
            "givenName": None if names_missing else given,
            "jobTitle": None if roll() < 0.10 else rng.choice(_JOB_TITLES),
            "mail": None if roll() < 0.05 else upn,
            "mobilePhone": mobile,
            "officeLocation": None if roll() < 0.10 else office,
            "preferredLanguage": None if roll() < 0.35 else nation.language,
            "surname": None if names_missing else surname,
            "userPrincipalName": upn,
            "id": self.user_id(index),
            "department": None if roll() < 0.08 else rng.choice(_DEPARTMENTS),
            "companyName": company,
            "city": city,
            "country": _COUNTRY_NAMES[office_nation.code],
            "usageLocation": office_nation.code,
            "accountEnabled": roll() >= 0.02,
            "employeeId": None if roll() < 0.3 else str(100000 + index),
            "faxNumber": None,
            "otherMails": [],
            "streetAddress": None,
            "postalCode": None,
            "state": None,
            "userType": "Member",
        }

    # ---- mutations -------------------------------------------------------------------------------
    def resolve(self, ref: Any) -> int:
        """An index from a reference: {"id": guid} / {"index": n} / {"userPrincipalName": upn} / guid."""
        if isinstance(ref, dict):
            if "index" in ref:
                index = int(ref["index"])
                if not 0 <= index < self.total:
                    raise KeyError(f"no user at index {index}")
                return index
            if "userPrincipalName" in ref:
                index = self.index_of_upn(str(ref["userPrincipalName"]))
                if index is None:
                    raise KeyError("no such userPrincipalName")
                return index
            ref = ref.get("id")
        if isinstance(ref, int):
            return self.resolve({"index": ref})
        index = self.index_of(str(ref))
        if index is None:
            raise KeyError(f"no user with id {ref}")
        return index

    def update_user(self, index: int, fields: dict[str, Any]) -> int:
        unknown = set(fields) - MUTABLE_PROPERTIES
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        if not fields:
            raise ValueError("nothing to update")
        with self._lock:
            if index in self._removed or not 0 <= index < self.total:
                raise KeyError("cannot update a removed or unknown user")
            current = self.user(index)
            assert current is not None
            if "userPrincipalName" in fields:
                old = current["userPrincipalName"].lower()
                self._upn_overrides.pop(old, None)
                self._upn_overrides[str(fields["userPrincipalName"]).lower()] = index
            self._overrides.setdefault(index, {}).update(fields)
            return self._append(index, "update", tuple(fields))

    def remove_user(self, index: int, reason: str = "deleted") -> int:
        if reason not in REMOVAL_REASONS:
            raise ValueError(f"reason must be one of {REMOVAL_REASONS}")
        with self._lock:
            if not 0 <= index < self.total:
                raise KeyError("no such user")
            if index in self._removed:
                raise KeyError("user already removed")
            self._removed[index] = reason
            return self._append(index, "remove")

    def restore_user(self, index: int) -> int:
        with self._lock:
            if self._removed.get(index) != "changed":
                raise KeyError("only soft-deleted users (reason 'changed') can be restored")
            del self._removed[index]
            return self._append(index, "restore")

    def add_user(self, fields: dict[str, Any] | None = None) -> int:
        """Append a new user (generated like the others, then `fields` applied); returns its index."""
        with self._lock:
            index = self.total
            self._added += 1
            if fields:
                unknown = set(fields) - MUTABLE_PROPERTIES
                if unknown:
                    self._added -= 1
                    raise ValueError(f"cannot set {sorted(unknown)}")
                self._overrides[index] = dict(fields)
                if "userPrincipalName" in fields:
                    self._upn_overrides[str(fields["userPrincipalName"]).lower()] = index
            self._append(index, "add")
            return index

    def _append(self, index: int, kind: str, fields: tuple[str, ...] = ()) -> int:
        self.version += 1
        self._log.append(Change(self.version, index, kind, fields))
        return self.version

    # ---- delta -----------------------------------------------------------------------------------
    def changes(self, since: int, upto: int, aggregate: bool = True) -> list[ChangeItem]:
        """What an incremental delta round reports for versions in (since, upto].

        Aggregated per user in order of first change (removed > full > changed properties); with
        `aggregate=False` every log entry is its own item, so users changed twice repeat."""
        with self._lock:
            entries = [c for c in self._log[self._log_position(since):] if c.version <= upto]
            removed = dict(self._removed)
        items: list[ChangeItem] = []
        if not aggregate:
            for c in entries:
                reason = removed.get(c.index)
                items.append(ChangeItem(c.index, reason, c.kind in ("add", "restore"), frozenset(c.fields)))
            return items
        by_index: dict[int, ChangeItem] = {}
        for c in entries:
            item = by_index.get(c.index)
            if item is None:
                item = by_index[c.index] = ChangeItem(c.index, None, False)
                items.append(item)
            if c.kind in ("add", "restore"):
                item.full = True
            item.fields = item.fields | frozenset(c.fields)
        for item in items:
            item.removed = removed.get(item.index)
        return items

    def _log_position(self, since: int) -> int:
        # Versions are 1..n in log order, so version v sits at position v-1.
        return max(0, min(since, len(self._log)))

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"size": self.size, "added": self._added, "removed": len(self._removed),
                    "updated": len(self._overrides), "version": self.version,
                    "live": self.total - len(self._removed)}


_ASCII_NAMES = {name: transliterate(name) for nation in _NATIONS for name in nation.first + nation.last}


def _ascii(name: str) -> str:
    cached = _ASCII_NAMES.get(name)
    return cached if cached is not None else transliterate(name)


def _nation_of(combo: int) -> int:
    offsets = _POOLS.offsets
    n = len(offsets) - 1
    while offsets[n] > combo:
        n -= 1
    return n
