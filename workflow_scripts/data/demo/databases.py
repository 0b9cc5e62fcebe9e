"""The demo's databases, declared: eight for training, four held out for evaluation (split by database).

Every database has a parent table and a child table that references it (some parents have no children),
each with a label, a category and measures, so that every question family applies to every database.
"""

from __future__ import annotations

from workflow_scripts.data.demo.spec import (
    PERSON,
    DatabaseSpec,
    IntRange,
    Labels,
    RealRange,
    TableSpec,
    category,
    foreign_key,
    key,
    label,
    measure,
)

CITIES = ("Boston", "Chicago", "Denver", "Seattle", "Austin", "Portland")
PLACES = ("North", "South", "East", "West", "Central", "Harbor", "River", "Lake", "Hill", "Park")
COLOURS = ("Red", "Blue", "Green", "Golden", "Silver", "White", "Black", "Amber", "Crimson", "Ivory")
NOUNS = ("Star", "Wave", "Storm", "Dream", "Road", "Light", "Stone", "Bridge", "Garden", "Tower")


def _two(db_id: str, parent: TableSpec, child: TableSpec) -> DatabaseSpec:
    return DatabaseSpec(db_id, (parent, child))


TRAIN: tuple[DatabaseSpec, ...] = (
    _two(
        "school",
        TableSpec(
            "department",
            "department",
            "departments",
            12,
            (
                key("department"),
                label("name", "name", Labels(PLACES, ("Science", "Arts", "Studies"))),
                category("building", "building", ("Hall A", "Hall B", "Hall C", "Annex")),
                measure("budget", "budget", IntRange(50, 900)),
            ),
        ),
        TableSpec(
            "student",
            "student",
            "students",
            45,
            (
                key("student"),
                label("name", "name", PERSON),
                category("major", "major", ("Biology", "History", "Physics", "Economics", "Art")),
                measure("age", "age", IntRange(17, 70)),
                measure("gpa", "GPA", RealRange(2.0, 4.0, 2)),
                foreign_key("department"),
            ),
        ),
    ),
    _two(
        "store",
        TableSpec(
            "supplier",
            "supplier",
            "suppliers",
            12,
            (
                key("supplier"),
                label("name", "name", Labels(COLOURS, ("Traders", "Goods", "Supply"))),
                category("country", "country", ("Canada", "France", "Japan", "Brazil")),
                measure("rating", "rating", RealRange(1.0, 5.0, 1)),
            ),
        ),
        TableSpec(
            "product",
            "product",
            "products",
            45,
            (
                key("product"),
                label("name", "name", Labels(COLOURS, ("Lamp", "Chair", "Table", "Mug", "Clock"))),
                category("category", "category", ("Kitchen", "Office", "Garden", "Toys")),
                measure("price", "price", IntRange(5, 500)),
                measure("stock", "stock", IntRange(0, 300)),
                foreign_key("supplier"),
            ),
        ),
    ),
    _two(
        "library",
        TableSpec(
            "author",
            "author",
            "authors",
            14,
            (
                key("author"),
                label("name", "name", PERSON),
                category("nationality", "nationality", ("British", "American", "Irish", "Indian")),
                measure("birth_year", "birth year", IntRange(1900, 1990)),
            ),
        ),
        TableSpec(
            "book",
            "book",
            "books",
            45,
            (
                key("book"),
                label("title", "title", Labels(COLOURS, NOUNS)),
                category("genre", "genre", ("Mystery", "Fantasy", "Poetry", "History", "Romance")),
                measure("pages", "number of pages", IntRange(90, 900)),
                measure("publication_year", "publication year", IntRange(1950, 2023)),
                foreign_key("author"),
            ),
        ),
    ),
    _two(
        "concert_singer",
        TableSpec(
            "stadium",
            "stadium",
            "stadiums",
            12,
            (
                key("stadium"),
                label("name", "name", Labels(PLACES, ("Arena", "Dome", "Field"))),
                category("city", "city", CITIES),
                measure("capacity", "capacity", IntRange(5000, 90000)),
            ),
        ),
        TableSpec(
            "concert",
            "concert",
            "concerts",
            40,
            (
                key("concert"),
                label("concert_name", "concert name", Labels(COLOURS, NOUNS)),
                category("theme", "theme", ("Rock", "Pop", "Jazz", "Folk")),
                measure("year", "year", IntRange(1980, 2023)),
                measure("attendance", "attendance", IntRange(1000, 60000)),
                foreign_key("stadium"),
            ),
        ),
    ),
    _two(
        "company",
        TableSpec(
            "office",
            "office",
            "offices",
            12,
            (
                key("office"),
                label("name", "name", Labels(PLACES, ("Office", "Branch", "Center"))),
                category("city", "city", CITIES),
                measure("floor_area", "floor area", IntRange(100, 5000)),
            ),
        ),
        TableSpec(
            "employee",
            "employee",
            "employees",
            50,
            (
                key("employee"),
                label("name", "name", PERSON),
                category("role", "role", ("Engineer", "Manager", "Analyst", "Clerk", "Designer")),
                measure("salary", "salary", IntRange(30000, 150000)),
                measure("age", "age", IntRange(19, 75)),
                foreign_key("office"),
            ),
        ),
    ),
    _two(
        "zoo",
        TableSpec(
            "enclosure",
            "enclosure",
            "enclosures",
            12,
            (
                key("enclosure"),
                label("name", "name", Labels(PLACES, ("Pen", "House", "Yard"))),
                category("habitat", "habitat", ("Desert", "Jungle", "Savanna", "Arctic")),
                measure("area", "area", IntRange(50, 2000)),
            ),
        ),
        TableSpec(
            "animal",
            "animal",
            "animals",
            45,
            (
                key("animal"),
                label(
                    "name",
                    "name",
                    Labels(
                        ("Leo", "Max", "Bella", "Coco", "Luna", "Rocky", "Milo", "Nala", "Kiwi"),
                        ("Junior", "Senior", "Prime", "Major", "Minor", "Third"),
                    ),
                ),
                category("species", "species", ("Lion", "Zebra", "Penguin", "Monkey", "Camel")),
                measure("weight", "weight", IntRange(5, 900)),
                measure("age", "age", IntRange(1, 60)),
                foreign_key("enclosure"),
            ),
        ),
    ),
    _two(
        "music",
        TableSpec(
            "artist",
            "artist",
            "artists",
            14,
            (
                key("artist"),
                label("name", "name", PERSON),
                category("country", "country", ("Canada", "Sweden", "Nigeria", "Mexico")),
                measure("debut_year", "debut year", IntRange(1960, 2020)),
            ),
        ),
        TableSpec(
            "album",
            "album",
            "albums",
            45,
            (
                key("album"),
                label("title", "title", Labels(COLOURS, NOUNS)),
                category("genre", "genre", ("Rock", "Pop", "Jazz", "Soul", "Metal")),
                measure("sales", "sales", IntRange(1000, 900000)),
                measure("tracks", "number of tracks", IntRange(6, 60)),
                foreign_key("artist"),
            ),
        ),
    ),
    _two(
        "sports",
        TableSpec(
            "team",
            "team",
            "teams",
            12,
            (
                key("team"),
                label("name", "name", Labels(COLOURS, ("Eagles", "Bears", "Sharks", "Wolves"))),
                category("city", "city", CITIES),
                measure("founded", "founding year", IntRange(1880, 2010)),
            ),
        ),
        TableSpec(
            "player",
            "player",
            "players",
            50,
            (
                key("player"),
                label("name", "name", PERSON),
                category("position", "position", ("Guard", "Forward", "Center", "Keeper")),
                measure("height", "height", IntRange(160, 215)),
                measure("goals", "number of goals", IntRange(0, 300)),
                foreign_key("team"),
            ),
        ),
    ),
)

DEV: tuple[DatabaseSpec, ...] = (
    _two(
        "flights",
        TableSpec(
            "airline",
            "airline",
            "airlines",
            12,
            (
                key("airline"),
                label("name", "name", Labels(COLOURS, ("Air", "Airways", "Jet"))),
                category("country", "country", ("Canada", "France", "Japan", "Brazil")),
                measure("fleet_size", "fleet size", IntRange(5, 400)),
            ),
        ),
        TableSpec(
            "flight",
            "flight",
            "flights",
            45,
            (
                key("flight"),
                label(
                    "flight_number",
                    "flight number",
                    Labels(("AX", "BK", "CQ", "DL", "EZ", "FR"), tuple(str(n) for n in range(100, 112))),
                ),
                category("destination", "destination", CITIES),
                measure("distance", "distance", IntRange(200, 9000)),
                measure("price", "price", IntRange(50, 1500)),
                foreign_key("airline"),
            ),
        ),
    ),
    _two(
        "hospital",
        TableSpec(
            "ward",
            "ward",
            "wards",
            12,
            (
                key("ward"),
                label("name", "name", Labels(PLACES, ("Wing", "Unit", "Ward"))),
                category("specialty", "specialty", ("Cardiology", "Oncology", "Pediatrics", "Surgery")),
                measure("beds", "number of beds", IntRange(5, 120)),
            ),
        ),
        TableSpec(
            "patient",
            "patient",
            "patients",
            45,
            (
                key("patient"),
                label("name", "name", PERSON),
                category("blood_type", "blood type", ("A", "B", "AB", "O")),
                measure("age", "age", IntRange(1, 99)),
                measure("stay_days", "length of stay in days", IntRange(1, 90)),
                foreign_key("ward"),
            ),
        ),
    ),
    _two(
        "cinema",
        TableSpec(
            "studio",
            "studio",
            "studios",
            12,
            (
                key("studio"),
                label("name", "name", Labels(COLOURS, ("Pictures", "Films", "Studios"))),
                category("city", "city", CITIES),
                measure("founded", "founding year", IntRange(1900, 2015)),
            ),
        ),
        TableSpec(
            "film",
            "film",
            "films",
            45,
            (
                key("film"),
                label("title", "title", Labels(COLOURS, NOUNS)),
                category("genre", "genre", ("Drama", "Comedy", "Horror", "Action")),
                measure("budget", "budget", IntRange(1, 300)),
                measure("running_time", "running time", IntRange(70, 200)),
                foreign_key("studio"),
            ),
        ),
    ),
    _two(
        "shipping",
        TableSpec(
            "port",
            "port",
            "ports",
            12,
            (
                key("port"),
                label("name", "name", Labels(PLACES, ("Port", "Dock", "Harbour"))),
                category("country", "country", ("Norway", "Chile", "Kenya", "Greece")),
                measure("depth", "depth", IntRange(5, 60)),
            ),
        ),
        TableSpec(
            "ship",
            "ship",
            "ships",
            45,
            (
                key("ship"),
                label("name", "name", Labels(COLOURS, ("Spirit", "Queen", "Voyager", "Arrow", "Falcon"))),
                category("type", "type", ("Tanker", "Ferry", "Cargo", "Cruise")),
                measure("tonnage", "tonnage", IntRange(500, 90000)),
                measure("crew", "crew size", IntRange(5, 400)),
                foreign_key("port"),
            ),
        ),
    ),
)
