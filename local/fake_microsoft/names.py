"""Name pools of the synthetic directories: nine nationalities (first names, surnames, offices), job titles,
departments, company names, and the ASCII forms of names used in addresses.

Surnames are disjoint across nationalities (after transliteration), so a userPrincipalName names its
nationality unambiguously; `POOLS` checks that at import and indexes every (first, last) pair.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Nation:
    code: str  # ISO 3166 region of phones and offices
    language: str
    first: tuple[str, ...]
    last: tuple[str, ...]
    offices: tuple[tuple[str, str], ...]  # (officeLocation, city)


NATIONS: tuple[Nation, ...] = (
    Nation(
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
    Nation(
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
    Nation(
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
    Nation(
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
    Nation(
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
    Nation(
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
    Nation(
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
    Nation(
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
    Nation(
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

JOB_TITLES = (
    "Software Engineer", "Senior Software Engineer", "Product Manager", "Sales Manager",
    "Account Executive", "Key Account Manager", "HR Business Partner", "Controller", "Data Analyst",
    "IT Administrator", "Office Manager", "Marketing Specialist", "Consultant", "Senior Consultant",
    "Head of Operations", "Chief Financial Officer", "Projektleiter", "Projektleiterin",
    "Vertriebsmitarbeiterin", "Sachbearbeiter Einkauf", "Teamleitung Kundenservice", "Werkstudent",
    "Geschäftsführer", "Buchhalterin", "Chef de projet", "Responsabile commerciale",
    "Ingeniera de software", "Accountmanager", "Kierownik projektu", "Systemutvecklare",
)
DEPARTMENTS = (
    "Sales", "Marketing", "Finance", "Human Resources", "IT", "Engineering", "Operations",
    "Customer Service", "Legal", "Procurement", "Research & Development", "Logistics", "Vertrieb",
    "Einkauf", "Buchhaltung", "Geschäftsführung",
)
COMPANY_PREFIX = ("Nordwind", "Alpenglanz", "Rheinblick", "Hanse", "Kontorhaus", "Blauwal",
                  "Lindwurm", "Sonnenhof", "Falkenstein", "Eichenlaub", "Bernstein", "Seeadler")
COMPANY_SUFFIX = ("Logistik GmbH", "Systems AG", "Consulting GmbH & Co. KG", "Handels GmbH",
                  "Software SE", "Technik GmbH", "Medien GmbH", "Europe B.V.")
COUNTRY_NAMES = {"DE": "Germany", "GB": "United Kingdom", "FR": "France", "IT": "Italy", "ES": "Spain",
                 "NL": "Netherlands", "PL": "Poland", "SE": "Sweden", "US": "United States"}


def transliterate(text: str) -> str:
    """ASCII form of a name for addresses: umlauts as 'ae' etc., accents dropped, no spaces."""
    special = {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "ae", "Ö": "oe", "Ü": "ue", "ł": "l",
               "Ł": "l", "ø": "o", "æ": "ae", "å": "a", "Å": "a", "ı": "i"}
    out = "".join(special.get(ch, ch) for ch in text)
    out = unicodedata.normalize("NFKD", out).encode("ascii", "ignore").decode()
    return "".join(ch for ch in out.lower() if ch.isalnum())


@dataclass(frozen=True)
class Pools:
    nations: tuple[Nation, ...]
    offsets: tuple[int, ...]  # first combo index of each nation
    total: int  # number of (first, last) combos over all nations
    by_last: dict[str, tuple[int, int]]  # transliterated surname -> (nation index, surname index)
    first_index: tuple[dict[str, int], ...]  # per nation: transliterated first name -> index


def _build_pools() -> Pools:
    offsets, total, by_last, first_index = [], 0, {}, []
    for n, nation in enumerate(NATIONS):
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
    return Pools(NATIONS, tuple(offsets), total, by_last, tuple(first_index))


POOLS = _build_pools()
_ASCII_NAMES = {name: transliterate(name) for nation in NATIONS for name in nation.first + nation.last}


def ascii_name(name: str) -> str:
    """`transliterate(name)`, precomputed for the names of the pools."""
    cached = _ASCII_NAMES.get(name)
    return cached if cached is not None else transliterate(name)


def nation_of(combo: int) -> int:
    """The nation (index into POOLS.nations) of a (first, last) combination number."""
    offsets = POOLS.offsets
    n = len(offsets) - 1
    while offsets[n] > combo:
        n -= 1
    return n
