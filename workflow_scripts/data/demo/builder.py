"""Embedded demo benchmark: six small Spider-style SQLite databases with templated questions.

`build_demo` writes ``database/<db_id>/<db_id>.sqlite``, ``train.json``, ``dev.json`` (split by
database) and ``tables.json`` under an output directory. Everything derives from the seed, so two
builds with the same seed are identical.

Length: six hand-written databases, each a builder function of its own; issue #16 replaces them with one
declarative spec per database and one builder of question families shared by all of them.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRAIN_DB_IDS: tuple[str, ...] = ("concert_singer", "school", "store", "library")
DEV_DB_IDS: tuple[str, ...] = ("flights", "hospital")

FIRST_NAMES = (
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William", "Elizabeth",
    "David", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen",
    "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Betty", "Mark", "Sandra", "Paul", "Ashley",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Wilson", "Anderson", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Thompson",
    "White", "Harris", "Clark", "Lewis", "Walker", "Hall", "Young", "King", "Wright", "Scott",
)  # fmt: skip
CITIES = ("Boston", "Chicago", "Denver", "Seattle", "Austin", "Portland", "Atlanta", "Miami")
COUNTRIES = ("United States", "Canada", "France", "Germany", "Japan", "Brazil", "Australia", "Spain")


@dataclass(frozen=True)
class Table:
    """One table: ordered (name, SQL type) columns, primary key and (column, ref_table, ref_column) FKs."""

    name: str
    columns: tuple[tuple[str, str], ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[tuple[str, str, str], ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]


@dataclass
class Database:
    """A generated database: schema, rows per table and (question, gold SQL) pairs."""

    db_id: str
    tables: list[Table]
    rows: dict[str, list[tuple[Any, ...]]]
    questions: list[tuple[str, str]] = field(default_factory=list)

    def column(self, table: str, column: str) -> list[Any]:
        """All values of one column, in row order."""
        tbl = next(t for t in self.tables if t.name == table)
        idx = tbl.column_names.index(column)
        return [row[idx] for row in self.rows[table]]


# ---------------------------------------------------------------------------------------------- helpers


def _lit(value: str) -> str:
    """A SQL string literal in single quotes."""
    return "'" + value.replace("'", "''") + "'"


def _names(rng: random.Random, n: int) -> list[str]:
    """`n` distinct "First Last" names."""
    pairs = rng.sample([(f, last) for f in FIRST_NAMES for last in LAST_NAMES], n)
    return [f"{f} {last}" for f, last in pairs]


def _threshold(rng: random.Random, values: Sequence[float]) -> float:
    """A value from the middle of `values` such that some values are strictly greater."""
    uniq = sorted(set(values))
    middle = uniq[len(uniq) // 4 : (3 * len(uniq)) // 4] or uniq[:-1]
    return rng.choice(middle)


def _count_threshold(values: Sequence[Any]) -> int:
    """An integer n >= 1 (where possible) such that at least one group of `values` has more than n members."""
    counts = sorted(Counter(values).values(), reverse=True)
    n = counts[len(counts) // 3]
    return max(min(n, counts[0] - 1), 0)


def _avg_threshold(groups: dict[Any, list[float]]) -> int:
    """An integer below the largest group average, near the median group average."""
    avgs = sorted((sum(v) / len(v) for v in groups.values()), reverse=True)
    x = math.floor(avgs[len(avgs) // 2])
    return x if avgs[0] > x else x - 1


def _choice(rng: random.Random, values: Sequence[Any]) -> Any:
    """A random element of the sorted distinct `values` (stable under row order)."""
    return rng.choice(sorted(set(values)))


def _pairs(rng: random.Random, left: Sequence[int], right: Sequence[int], n: int) -> list[tuple[int, int]]:
    """`n` distinct (left, right) id pairs, sorted."""
    return sorted(rng.sample([(a, b) for a in left for b in right], n))


def _break_tie(values: Sequence[Any]) -> list[Any]:
    """`values` with one element changed, if needed, so that the most frequent value is unique.

    Gold queries of the form ``GROUP BY ... ORDER BY count(*) DESC LIMIT 1`` then have one answer.
    """
    counts = Counter(values)
    top = max(counts.values())
    tied = sorted(v for v, c in counts.items() if c == top)
    out = list(values)
    if len(tied) > 1:
        out[out.index(tied[1])] = tied[0]
    return out


def _country(name: str) -> str:
    """A country name as it reads inside a sentence."""
    return f"the {name}" if name == "United States" else name


def _date(rng: random.Random, years: Sequence[int]) -> str:
    return f"{rng.choice(years)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


# ---------------------------------------------------------------------------------------------- domains


def _concert_singer(rng: random.Random) -> Database:
    stadium_names = ["Riverside Arena", "Summit Park", "Lakeview Stadium", "Harbor Dome", "Victory Field",
                     "Maple Bowl", "Ironworks Arena", "Sunset Coliseum", "Pinecrest Stadium",
                     "Union Hall"]  # fmt: skip
    themes = ["Rock", "Pop", "Jazz", "Country", "Folk", "Classical"]
    adjectives = ["Summer", "Winter", "Electric", "Golden", "Midnight", "Acoustic", "Neon", "Crystal"]
    nouns = ["Nights", "Dreams", "Festival", "Tour", "Sessions", "Waves"]
    capacities = rng.sample(range(5000, 80001, 500), len(stadium_names))
    stadium = [(i + 1, name, rng.choice(CITIES), capacities[i]) for i, name in enumerate(stadium_names)]
    n_singers = 30
    ages = rng.sample(range(18, 66), n_singers)
    singer = [
        (i + 1, name, rng.choice(COUNTRIES[:5]), ages[i], round(rng.uniform(0.5, 50.0), 1))
        for i, name in enumerate(_names(rng, n_singers))
    ]
    concert_names = rng.sample([f"{a} {n}" for a in adjectives for n in nouns], 25)
    years = _break_tie([rng.randint(2014, 2019) for _ in concert_names])
    # The last stadium never hosts a concert, so questions about unused stadiums have answers.
    concert = [
        (i + 1, name, rng.choice(themes), rng.randint(1, len(stadium) - 1), years[i])
        for i, name in enumerate(concert_names)
    ]
    performers = sorted(rng.sample(range(1, n_singers + 1), 22))
    singer_in_concert = _pairs(rng, [c[0] for c in concert], performers, 50)
    db = Database(
        "concert_singer",
        [
            Table("stadium", (("stadium_id", "INTEGER"), ("name", "TEXT"), ("location", "TEXT"),
                              ("capacity", "INTEGER")), ("stadium_id",)),
            Table("singer", (("singer_id", "INTEGER"), ("name", "TEXT"), ("country", "TEXT"),
                             ("age", "INTEGER"), ("net_worth_millions", "REAL")), ("singer_id",)),
            Table("concert", (("concert_id", "INTEGER"), ("concert_name", "TEXT"), ("theme", "TEXT"),
                              ("stadium_id", "INTEGER"), ("year", "INTEGER")), ("concert_id",),
                  (("stadium_id", "stadium", "stadium_id"),)),
            Table("singer_in_concert", (("concert_id", "INTEGER"), ("singer_id", "INTEGER")),
                  ("concert_id", "singer_id"),
                  (("concert_id", "concert", "concert_id"), ("singer_id", "singer", "singer_id"))),
        ],
        {"stadium": stadium, "singer": singer, "concert": concert, "singer_in_concert": singer_in_concert},
    )  # fmt: skip
    country = _choice(rng, db.column("singer", "country"))
    country2 = _choice(rng, db.column("singer", "country"))
    age = _threshold(rng, db.column("singer", "age"))
    n = _count_threshold(db.column("singer", "country"))
    year = _choice(rng, db.column("concert", "year"))
    concert_name = concert[_choice(rng, [c for c, _ in singer_in_concert]) - 1][1]
    theme = _choice(rng, db.column("concert", "theme"))
    db.questions = [
        ("How many singers are there?", "SELECT count(*) FROM singer"),
        ("What is the total number of concerts?", "SELECT count(*) FROM concert"),
        ("List the name, country and age of all singers.", "SELECT name, country, age FROM singer"),
        (f"What are the names of the singers from {_country(country)}?",
         f"SELECT name FROM singer WHERE country = {_lit(country)}"),
        (f"How many singers are older than {age}?", f"SELECT count(*) FROM singer WHERE age > {age}"),
        (f"What are the average, minimum and maximum ages of singers from {_country(country2)}?",
         f"SELECT avg(age), min(age), max(age) FROM singer WHERE country = {_lit(country2)}"),
        (f"List the names of the concerts with the theme {theme}.",
         f"SELECT concert_name FROM concert WHERE theme = {_lit(theme)}"),
        ("Show the name and capacity of the stadium with the largest capacity.",
         "SELECT name, capacity FROM stadium ORDER BY capacity DESC LIMIT 1"),
        ("What are the names of the three youngest singers?",
         "SELECT name FROM singer ORDER BY age LIMIT 3"),
        ("What are the different countries that singers come from?", "SELECT DISTINCT country FROM singer"),
        ("How many singers are from each country?", "SELECT country, count(*) FROM singer GROUP BY country"),
        (f"Which countries have more than {n} singers?",
         f"SELECT country FROM singer GROUP BY country HAVING count(*) > {n}"),
        ("Show each stadium name and the number of concerts held there.",
         "SELECT T2.name, count(*) FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id "
         "GROUP BY T1.stadium_id"),
        (f"What are the names of the stadiums that hosted a concert in {year}?",
         "SELECT DISTINCT T2.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id "
         f"WHERE T1.year = {year}"),
        (f"What are the names of the singers who performed in the concert {concert_name}?",
         "SELECT T3.name FROM concert AS T1 JOIN singer_in_concert AS T2 ON T1.concert_id = T2.concert_id "
         f"JOIN singer AS T3 ON T2.singer_id = T3.singer_id WHERE T1.concert_name = {_lit(concert_name)}"),
        ("What are the names of the singers who have not performed in any concert?",
         "SELECT name FROM singer WHERE singer_id NOT IN (SELECT singer_id FROM singer_in_concert)"),
        ("Which stadiums have never hosted a concert? Give their names.",
         "SELECT name FROM stadium WHERE stadium_id NOT IN (SELECT stadium_id FROM concert)"),
        ("List the names of the stadiums whose capacity is above the average capacity.",
         "SELECT name FROM stadium WHERE capacity > (SELECT avg(capacity) FROM stadium)"),
        ("In which year were the most concerts held?",
         "SELECT year FROM concert GROUP BY year ORDER BY count(*) DESC LIMIT 1"),
    ]  # fmt: skip
    return db


def _school(rng: random.Random) -> Database:
    majors = ["Biology", "History", "Mathematics", "Physics", "Economics", "Art"]
    grades = ["A", "B", "C", "D"]
    course_defs = [
        ("Calculus I", "Mathematics"), ("Linear Algebra", "Mathematics"), ("Statistics", "Mathematics"),
        ("Genetics", "Biology"), ("Ecology", "Biology"), ("World History", "History"),
        ("Modern Europe", "History"), ("Mechanics", "Physics"), ("Electromagnetism", "Physics"),
        ("Microeconomics", "Economics"), ("Macroeconomics", "Economics"), ("Painting", "Art"),
    ]  # fmt: skip
    n_students = 40
    gpas = rng.sample(range(200, 401), n_students)
    student = []
    for i, name in enumerate(_names(rng, n_students)):
        first, last = name.split(" ")
        student.append(
            (i + 1, first, last, rng.choice(majors), rng.randint(18, 26), gpas[i] / 100, rng.choice(CITIES))
        )
    course = [(i + 1, title, dept, rng.choice([2, 3, 4])) for i, (title, dept) in enumerate(course_defs)]
    enrolled = sorted(rng.sample(range(1, n_students + 1), 32))
    enrollment = [
        (i + 1, s, c, rng.choice(grades), f"{rng.choice(['Fall', 'Spring'])} {rng.choice([2022, 2023])}")
        for i, (s, c) in enumerate(_pairs(rng, enrolled, [c[0] for c in course], 60))
    ]
    db = Database(
        "school",
        [
            Table("student", (("student_id", "INTEGER"), ("first_name", "TEXT"), ("last_name", "TEXT"),
                              ("major", "TEXT"), ("age", "INTEGER"), ("gpa", "REAL"), ("city", "TEXT")),
                  ("student_id",)),
            Table("course", (("course_id", "INTEGER"), ("title", "TEXT"), ("department", "TEXT"),
                             ("credits", "INTEGER")), ("course_id",)),
            Table("enrollment", (("enrollment_id", "INTEGER"), ("student_id", "INTEGER"),
                                 ("course_id", "INTEGER"), ("grade", "TEXT"), ("semester", "TEXT")),
                  ("enrollment_id",),
                  (("student_id", "student", "student_id"), ("course_id", "course", "course_id"))),
        ],
        {"student": student, "course": course, "enrollment": enrollment},
    )  # fmt: skip
    dept = _choice(rng, db.column("course", "department"))
    credits = _choice(rng, db.column("course", "credits"))
    major = _choice(rng, db.column("student", "major"))
    n = _count_threshold(db.column("student", "major")) + 1
    title = course[_choice(rng, [e[2] for e in enrollment]) - 1][1]
    grade = _choice(rng, [e[3] for e in enrollment])
    who = rng.choice(student)  # a real student, so the combined condition below matches at least them
    city = _choice(rng, db.column("student", "city"))
    db.questions = [
        ("How many students are there?", "SELECT count(*) FROM student"),
        (f"How many courses does the {dept} department offer?",
         f"SELECT count(*) FROM course WHERE department = {_lit(dept)}"),
        ("List the first and last names of all students.", "SELECT first_name, last_name FROM student"),
        (f"What are the titles of the courses worth {credits} credits?",
         f"SELECT title FROM course WHERE credits = {credits}"),
        (f"What are the first names of the students majoring in {major}?",
         f"SELECT first_name FROM student WHERE major = {_lit(major)}"),
        (f"How many students majoring in {who[3]} are older than {who[4] - 1}?",
         f"SELECT count(*) FROM student WHERE major = {_lit(who[3])} AND age > {who[4] - 1}"),
        (f"List the first and last names of the students who live in {city}.",
         f"SELECT first_name, last_name FROM student WHERE city = {_lit(city)}"),
        ("What is the average GPA of all students?", "SELECT avg(gpa) FROM student"),
        ("Show the first name and GPA of the student with the highest GPA.",
         "SELECT first_name, gpa FROM student ORDER BY gpa DESC LIMIT 1"),
        ("What are the distinct majors of the students?", "SELECT DISTINCT major FROM student"),
        ("How many students live in each city?", "SELECT city, count(*) FROM student GROUP BY city"),
        ("What is the average age of the students in each major?",
         "SELECT major, avg(age) FROM student GROUP BY major"),
        (f"Which majors have at least {n} students?",
         f"SELECT major FROM student GROUP BY major HAVING count(*) >= {n}"),
        ("Show the title of each course and the number of students enrolled in it.",
         "SELECT T2.title, count(*) FROM enrollment AS T1 JOIN course AS T2 ON T1.course_id = T2.course_id "
         "GROUP BY T1.course_id"),
        (f"What are the distinct first names of the students who got the grade {grade} in some course?",
         "SELECT DISTINCT T1.first_name FROM student AS T1 JOIN enrollment AS T2 "
         f"ON T1.student_id = T2.student_id WHERE T2.grade = {_lit(grade)}"),
        (f"What are the first and last names of the students enrolled in {title}?",
         "SELECT T1.first_name, T1.last_name FROM student AS T1 JOIN enrollment AS T2 "
         "ON T1.student_id = T2.student_id JOIN course AS T3 ON T2.course_id = T3.course_id "
         f"WHERE T3.title = {_lit(title)}"),
        ("Which students are not enrolled in any course? Give their first and last names.",
         "SELECT first_name, last_name FROM student "
         "WHERE student_id NOT IN (SELECT student_id FROM enrollment)"),
        ("Find the first names of the students whose GPA is higher than the average GPA.",
         "SELECT first_name FROM student WHERE gpa > (SELECT avg(gpa) FROM student)"),
        ("Which department offers the most courses?",
         "SELECT department FROM course GROUP BY department ORDER BY count(*) DESC LIMIT 1"),
    ]  # fmt: skip
    return db


def _store(rng: random.Random) -> Database:
    categories = {
        "Electronics": ["Headphones", "Keyboard", "Monitor", "Webcam", "Speaker"],
        "Kitchen": ["Blender", "Kettle", "Toaster", "Frying Pan"],
        "Books": ["Cookbook", "Novel", "Atlas", "Dictionary"],
        "Sports": ["Yoga Mat", "Football", "Tennis Racket", "Water Bottle"],
        "Garden": ["Shovel", "Hose", "Plant Pot"],
    }
    statuses = ["Delivered", "Shipped", "Pending", "Cancelled"]
    levels = ["Gold", "Silver", "Bronze"]
    n_customers = 30
    cities = _break_tie([rng.choice(CITIES[:6]) for _ in range(n_customers)])
    customer = [
        (i + 1, name, cities[i], rng.choice(levels)) for i, name in enumerate(_names(rng, n_customers))
    ]
    product_defs = [(name, cat) for cat, names in categories.items() for name in names]
    prices = rng.sample(range(299, 30000, 100), len(product_defs))
    product = [
        (i + 1, name, cat, prices[i] / 100, rng.randint(0, 200)) for i, (name, cat) in enumerate(product_defs)
    ]
    buyers = sorted(rng.sample(range(1, n_customers + 1), 24))
    orders = [(i + 1, rng.choice(buyers), _date(rng, [2022, 2023]), rng.choice(statuses)) for i in range(50)]
    sold = sorted(rng.sample([p[0] for p in product], 16))  # some products are never ordered
    order_item = [(o, p, rng.randint(1, 5)) for o, p in _pairs(rng, [o[0] for o in orders], sold, 60)]
    db = Database(
        "store",
        [
            Table("customer", (("customer_id", "INTEGER"), ("name", "TEXT"), ("city", "TEXT"),
                               ("membership_level", "TEXT")), ("customer_id",)),
            Table("product", (("product_id", "INTEGER"), ("name", "TEXT"), ("category", "TEXT"),
                              ("price", "REAL"), ("stock", "INTEGER")), ("product_id",)),
            Table("orders", (("order_id", "INTEGER"), ("customer_id", "INTEGER"), ("order_date", "TEXT"),
                             ("status", "TEXT")), ("order_id",),
                  (("customer_id", "customer", "customer_id"),)),
            Table("order_item", (("order_id", "INTEGER"), ("product_id", "INTEGER"), ("quantity", "INTEGER")),
                  ("order_id", "product_id"),
                  (("order_id", "orders", "order_id"), ("product_id", "product", "product_id"))),
        ],
        {"customer": customer, "product": product, "orders": orders, "order_item": order_item},
    )  # fmt: skip
    status = _choice(rng, db.column("orders", "status"))
    category = _choice(rng, db.column("product", "category"))
    price = _threshold(rng, db.column("product", "price"))
    avg_price = _avg_threshold(
        {c: [p[3] for p in product if p[2] == c] for c in db.column("product", "category")}
    )
    buyer = customer[_choice(rng, db.column("orders", "customer_id")) - 1][1]
    with_items = {o for o, _, _ in order_item}
    item_status = _choice(rng, [o[3] for o in orders if o[0] in with_items])
    member = rng.choice(customer)
    db.questions = [
        ("How many customers are there?", "SELECT count(*) FROM customer"),
        (f"How many orders have the status {status}?",
         f"SELECT count(*) FROM orders WHERE status = {_lit(status)}"),
        ("List the name and price of every product.", "SELECT name, price FROM product"),
        (f"What are the names of the products in the {category} category?",
         f"SELECT name FROM product WHERE category = {_lit(category)}"),
        (f"Which products cost less than {price}? Give their names and prices.",
         f"SELECT name, price FROM product WHERE price < {price}"),
        (f"How many {member[3]} members live in {member[2]}?",
         f"SELECT count(*) FROM customer WHERE membership_level = {_lit(member[3])} "
         f"AND city = {_lit(member[2])}"),
        ("What are the names of the five most expensive products?",
         "SELECT name FROM product ORDER BY price DESC LIMIT 5"),
        ("What is the average price of the products in each category?",
         "SELECT category, avg(price) FROM product GROUP BY category"),
        ("How many products are there in each category?",
         "SELECT category, count(*) FROM product GROUP BY category"),
        ("List the distinct cities where customers live.", "SELECT DISTINCT city FROM customer"),
        (f"Which categories have an average product price above {avg_price}?",
         f"SELECT category FROM product GROUP BY category HAVING avg(price) > {avg_price}"),
        (f"What are the ids and dates of the orders placed by {buyer}?",
         "SELECT T2.order_id, T2.order_date FROM customer AS T1 JOIN orders AS T2 "
         f"ON T1.customer_id = T2.customer_id WHERE T1.name = {_lit(buyer)}"),
        ("Show the name of each customer and the number of orders they placed.",
         "SELECT T1.name, count(*) FROM customer AS T1 JOIN orders AS T2 ON T1.customer_id = T2.customer_id "
         "GROUP BY T1.customer_id"),
        (f"What are the distinct names of the products in orders with the status {item_status}?",
         "SELECT DISTINCT T3.name FROM orders AS T1 JOIN order_item AS T2 ON T1.order_id = T2.order_id "
         f"JOIN product AS T3 ON T2.product_id = T3.product_id WHERE T1.status = {_lit(item_status)}"),
        ("What is the total quantity ordered of each product? Show the product names.",
         "SELECT T2.name, sum(T1.quantity) FROM order_item AS T1 JOIN product AS T2 "
         "ON T1.product_id = T2.product_id GROUP BY T1.product_id"),
        ("What are the names of the products that have never been ordered?",
         "SELECT name FROM product WHERE product_id NOT IN (SELECT product_id FROM order_item)"),
        ("Which products are more expensive than the average product? List their names.",
         "SELECT name FROM product WHERE price > (SELECT avg(price) FROM product)"),
        ("Which city has the most customers?",
         "SELECT city FROM customer GROUP BY city ORDER BY count(*) DESC LIMIT 1"),
    ]  # fmt: skip
    return db


def _library(rng: random.Random) -> Database:
    genres = ["Mystery", "Science Fiction", "Romance", "Biography", "Fantasy", "History"]
    title_a = ["Silent", "Hidden", "Lost", "Broken", "Distant", "Secret", "Last", "Crimson"]
    title_b = ["River", "Garden", "Empire", "Letter", "Island", "Kingdom", "Mirror", "Voyage"]
    n_authors, n_books = 15, 40
    birth_years = rng.sample(range(1920, 1991), n_authors)
    author = [
        (i + 1, name, rng.choice(COUNTRIES), birth_years[i]) for i, name in enumerate(_names(rng, n_authors))
    ]
    titles = rng.sample([f"The {a} {b}" for a in title_a for b in title_b], n_books)
    pages = rng.sample(range(120, 900), n_books)
    book = [
        (i + 1, t, rng.randint(1, n_authors), rng.choice(genres), rng.randint(1950, 2023), pages[i])
        for i, t in enumerate(titles)
    ]
    member = [
        (i + 1, name, rng.choice(CITIES), rng.randint(2010, 2023)) for i, name in enumerate(_names(rng, 25))
    ]
    loaned = sorted(rng.sample(range(1, n_books + 1), 30))
    pairs = _pairs(rng, loaned, [m[0] for m in member], 50)
    borrowers = _break_tie([m for _, m in pairs])
    loan = [
        (i + 1, b, borrowers[i], _date(rng, [2022, 2023]), rng.choice(["Yes", "Yes", "No"]))
        for i, (b, _) in enumerate(pairs)
    ]
    db = Database(
        "library",
        [
            Table("author", (("author_id", "INTEGER"), ("name", "TEXT"), ("nationality", "TEXT"),
                             ("birth_year", "INTEGER")), ("author_id",)),
            Table("book", (("book_id", "INTEGER"), ("title", "TEXT"), ("author_id", "INTEGER"),
                           ("genre", "TEXT"), ("publication_year", "INTEGER"), ("pages", "INTEGER")),
                  ("book_id",), (("author_id", "author", "author_id"),)),
            Table("member", (("member_id", "INTEGER"), ("name", "TEXT"), ("city", "TEXT"),
                             ("join_year", "INTEGER")), ("member_id",)),
            Table("loan", (("loan_id", "INTEGER"), ("book_id", "INTEGER"), ("member_id", "INTEGER"),
                           ("loan_date", "TEXT"), ("returned", "TEXT")), ("loan_id",),
                  (("book_id", "book", "book_id"), ("member_id", "member", "member_id"))),
        ],
        {"author": author, "book": book, "member": member, "loan": loan},
    )  # fmt: skip
    nationality = _choice(rng, db.column("author", "nationality"))
    year = _threshold(rng, db.column("book", "publication_year"))
    n_pages = _threshold(rng, db.column("book", "pages"))
    n = _count_threshold(db.column("book", "genre"))
    writer = author[_choice(rng, db.column("book", "author_id")) - 1][1]
    borrowed = book[_choice(rng, db.column("loan", "book_id")) - 1][1]
    genre = _choice(rng, db.column("book", "genre"))
    db.questions = [
        ("How many books are there?", "SELECT count(*) FROM book"),
        (f"How many authors are from {_country(nationality)}?",
         f"SELECT count(*) FROM author WHERE nationality = {_lit(nationality)}"),
        ("List the titles and genres of all books.", "SELECT title, genre FROM book"),
        (f"What are the titles of the books published after {year}?",
         f"SELECT title FROM book WHERE publication_year > {year}"),
        (f"Which books have more than {n_pages} pages? Give their titles.",
         f"SELECT title FROM book WHERE pages > {n_pages}"),
        (f"What are the titles of the {genre} books?", f"SELECT title FROM book WHERE genre = {_lit(genre)}"),
        ("How many loans have not been returned?", "SELECT count(*) FROM loan WHERE returned = 'No'"),
        ("What is the earliest birth year among the authors?", "SELECT min(birth_year) FROM author"),
        ("What is the title of the book with the most pages?",
         "SELECT title FROM book ORDER BY pages DESC LIMIT 1"),
        ("What are the different genres of the books?", "SELECT DISTINCT genre FROM book"),
        ("How many books are there in each genre?", "SELECT genre, count(*) FROM book GROUP BY genre"),
        ("What is the average number of pages of the books in each genre?",
         "SELECT genre, avg(pages) FROM book GROUP BY genre"),
        (f"Which genres have more than {n} books?",
         f"SELECT genre FROM book GROUP BY genre HAVING count(*) > {n}"),
        (f"What are the titles of the books written by {writer}?",
         "SELECT T2.title FROM author AS T1 JOIN book AS T2 ON T1.author_id = T2.author_id "
         f"WHERE T1.name = {_lit(writer)}"),
        ("Show the name of each author and the number of books they wrote.",
         "SELECT T1.name, count(*) FROM author AS T1 JOIN book AS T2 ON T1.author_id = T2.author_id "
         "GROUP BY T1.author_id"),
        (f"What are the names of the members who borrowed {borrowed}?",
         "SELECT T3.name FROM book AS T1 JOIN loan AS T2 ON T1.book_id = T2.book_id "
         f"JOIN member AS T3 ON T2.member_id = T3.member_id WHERE T1.title = {_lit(borrowed)}"),
        ("What are the titles of the books that have never been loaned?",
         "SELECT title FROM book WHERE book_id NOT IN (SELECT book_id FROM loan)"),
        ("List the titles of the books that have more pages than the average book.",
         "SELECT title FROM book WHERE pages > (SELECT avg(pages) FROM book)"),
        ("What is the name of the member who has borrowed the most books?",
         "SELECT T2.name FROM loan AS T1 JOIN member AS T2 ON T1.member_id = T2.member_id "
         "GROUP BY T1.member_id ORDER BY count(*) DESC LIMIT 1"),
    ]  # fmt: skip
    return db


def _flights(rng: random.Random) -> Database:
    airline_defs = [
        ("Blue Sky Airways", "United States"), ("Northern Air", "Canada"), ("Air Lumiere", "France"),
        ("Alpine Jet", "Germany"), ("Sakura Airlines", "Japan"), ("Condor Express", "Brazil"),
        ("Southern Cross Air", "Australia"), ("Iberia Wings", "Spain"), ("Pacific Link", "Japan"),
        ("Maple Leaf Air", "Canada"),
    ]  # fmt: skip
    airport_defs = [
        ("BOS", "Logan International", "Boston", "United States"),
        ("ORD", "OHare International", "Chicago", "United States"),
        ("SEA", "Seattle Tacoma", "Seattle", "United States"),
        ("YYZ", "Pearson International", "Toronto", "Canada"),
        ("YVR", "Vancouver International", "Vancouver", "Canada"),
        ("CDG", "Charles de Gaulle", "Paris", "France"),
        ("NCE", "Cote d Azur", "Nice", "France"),
        ("FRA", "Frankfurt Main", "Frankfurt", "Germany"),
        ("MUC", "Franz Josef Strauss", "Munich", "Germany"),
        ("HND", "Haneda", "Tokyo", "Japan"),
        ("KIX", "Kansai International", "Osaka", "Japan"),
        ("GRU", "Guarulhos", "Sao Paulo", "Brazil"),
        ("SYD", "Kingsford Smith", "Sydney", "Australia"),
        ("MAD", "Barajas", "Madrid", "Spain"),
        ("BCN", "El Prat", "Barcelona", "Spain"),
    ]
    founded = rng.sample(range(1925, 2011), len(airline_defs))
    airline = [(i + 1, name, country, founded[i]) for i, (name, country) in enumerate(airline_defs)]
    airport = [(i + 1, *a) for i, a in enumerate(airport_defs)]
    active = sorted(rng.sample([a[0] for a in airline], 8))
    hubs = sorted(rng.sample([a[0] for a in airport], 12))  # the other airports have no departures
    distances = rng.sample(range(300, 12001, 10), 50)
    durations = rng.sample(range(60, 900, 5), 50)
    flight = []
    for i in range(50):
        carrier = rng.choice(active)
        src = rng.choice(hubs)
        dst = rng.choice([a[0] for a in airport if a[0] != src])
        code = airline[carrier - 1][1][:2].upper()
        flight.append((i + 1, f"{code}{100 + i}", carrier, src, dst, distances[i], durations[i]))
    db = Database(
        "flights",
        [
            Table("airline", (("airline_id", "INTEGER"), ("name", "TEXT"), ("country", "TEXT"),
                              ("founded_year", "INTEGER")), ("airline_id",)),
            Table("airport", (("airport_id", "INTEGER"), ("code", "TEXT"), ("name", "TEXT"), ("city", "TEXT"),
                              ("country", "TEXT")), ("airport_id",)),
            Table("flight", (("flight_id", "INTEGER"), ("flight_number", "TEXT"), ("airline_id", "INTEGER"),
                             ("source_airport_id", "INTEGER"), ("destination_airport_id", "INTEGER"),
                             ("distance", "INTEGER"), ("duration_minutes", "INTEGER")), ("flight_id",),
                  (("airline_id", "airline", "airline_id"), ("source_airport_id", "airport", "airport_id"),
                   ("destination_airport_id", "airport", "airport_id"))),
        ],
        {"airline": airline, "airport": airport, "flight": flight},
    )  # fmt: skip
    country = _choice(rng, db.column("airport", "country"))
    country2 = _choice(rng, db.column("airport", "country"))
    distance = _threshold(rng, db.column("flight", "distance"))
    founded_before = _threshold(rng, db.column("airline", "founded_year")) + 1
    n = _count_threshold(db.column("flight", "airline_id"))
    carrier_name = airline[_choice(rng, active) - 1][1]
    src_code = airport[_choice(rng, db.column("flight", "source_airport_id")) - 1][1]
    db.questions = [
        ("How many flights are there?", "SELECT count(*) FROM flight"),
        (f"How many airports are there in {_country(country)}?",
         f"SELECT count(*) FROM airport WHERE country = {_lit(country)}"),
        ("List the name and country of every airline.", "SELECT name, country FROM airline"),
        (f"What are the codes and names of the airports located in {_country(country2)}?",
         f"SELECT code, name FROM airport WHERE country = {_lit(country2)}"),
        (f"Which flights are longer than {distance} kilometers? Give their flight numbers.",
         f"SELECT flight_number FROM flight WHERE distance > {distance}"),
        (f"How many airlines were founded before {founded_before}?",
         f"SELECT count(*) FROM airline WHERE founded_year < {founded_before}"),
        ("What is the average distance of all flights?", "SELECT avg(distance) FROM flight"),
        ("What is the flight number of the flight with the longest duration?",
         "SELECT flight_number FROM flight ORDER BY duration_minutes DESC LIMIT 1"),
        ("What is the name of the oldest airline?", "SELECT name FROM airline ORDER BY founded_year LIMIT 1"),
        ("What are the distinct countries with airports?", "SELECT DISTINCT country FROM airport"),
        ("Show the name of each airline and the number of flights it operates.",
         "SELECT T1.name, count(*) FROM airline AS T1 JOIN flight AS T2 ON T1.airline_id = T2.airline_id "
         "GROUP BY T1.airline_id"),
        (f"Which airlines operate more than {n} flights? Give their names.",
         "SELECT T1.name FROM airline AS T1 JOIN flight AS T2 ON T1.airline_id = T2.airline_id "
         f"GROUP BY T1.airline_id HAVING count(*) > {n}"),
        (f"What are the flight numbers of the flights operated by {carrier_name}?",
         "SELECT T2.flight_number FROM airline AS T1 JOIN flight AS T2 ON T1.airline_id = T2.airline_id "
         f"WHERE T1.name = {_lit(carrier_name)}"),
        ("What is the average flight duration of each airline? Show the airline names.",
         "SELECT T1.name, avg(T2.duration_minutes) FROM airline AS T1 JOIN flight AS T2 "
         "ON T1.airline_id = T2.airline_id GROUP BY T1.airline_id"),
        (f"Which airlines have flights departing from the airport with code {src_code}?",
         "SELECT DISTINCT T1.name FROM airline AS T1 JOIN flight AS T2 ON T1.airline_id = T2.airline_id "
         f"JOIN airport AS T3 ON T2.source_airport_id = T3.airport_id WHERE T3.code = {_lit(src_code)}"),
        ("What are the names of the airports that no flight departs from?",
         "SELECT name FROM airport WHERE airport_id NOT IN (SELECT source_airport_id FROM flight)"),
        ("What are the flight numbers of the flights whose distance is above the average distance?",
         "SELECT flight_number FROM flight WHERE distance > (SELECT avg(distance) FROM flight)"),
    ]  # fmt: skip
    return db


def _hospital(rng: random.Random) -> Database:
    dept_names = ["Cardiology", "Neurology", "Pediatrics", "Oncology", "Orthopedics", "Dermatology",
                  "Radiology", "Emergency", "Psychiatry", "Surgery"]  # fmt: skip
    specialties = ["Cardiologist", "Neurologist", "Pediatrician", "Surgeon", "Dermatologist", "Radiologist"]
    department = [(i + 1, name, rng.randint(1, 6)) for i, name in enumerate(dept_names)]
    n_doctors, n_patients = 15, 40
    experience = rng.sample(range(1, 36), n_doctors)
    doctor = [
        (i + 1, f"Dr. {name}", rng.choice(specialties), rng.randint(1, len(department)), experience[i])
        for i, name in enumerate(_names(rng, n_doctors))
    ]
    patient = [
        (i + 1, name, rng.randint(1, 90), rng.choice(["F", "M"]), rng.choice(CITIES[:5]))
        for i, name in enumerate(_names(rng, n_patients))
    ]
    seen = sorted(rng.sample(range(1, n_patients + 1), 30))
    pairs = _pairs(rng, [d[0] for d in doctor], seen, 60)
    doctors = _break_tie([d for d, _ in pairs])
    appointment = [
        (i + 1, doctors[i], p, _date(rng, [2023]), rng.randrange(5000, 50001, 250) / 100)
        for i, (_, p) in enumerate(pairs)
    ]
    db = Database(
        "hospital",
        [
            Table("department", (("department_id", "INTEGER"), ("name", "TEXT"), ("floor", "INTEGER")),
                  ("department_id",)),
            Table("doctor", (("doctor_id", "INTEGER"), ("name", "TEXT"), ("specialty", "TEXT"),
                             ("department_id", "INTEGER"), ("years_experience", "INTEGER")), ("doctor_id",),
                  (("department_id", "department", "department_id"),)),
            Table("patient", (("patient_id", "INTEGER"), ("name", "TEXT"), ("age", "INTEGER"),
                              ("gender", "TEXT"), ("city", "TEXT")), ("patient_id",)),
            Table("appointment", (("appointment_id", "INTEGER"), ("doctor_id", "INTEGER"),
                                  ("patient_id", "INTEGER"), ("appointment_date", "TEXT"), ("cost", "REAL")),
                  ("appointment_id",),
                  (("doctor_id", "doctor", "doctor_id"), ("patient_id", "patient", "patient_id"))),
        ],
        {"department": department, "doctor": doctor, "patient": patient, "appointment": appointment},
    )  # fmt: skip
    age = _threshold(rng, db.column("patient", "age"))
    city = _choice(rng, db.column("patient", "city"))
    years = _threshold(rng, db.column("doctor", "years_experience"))
    n = _count_threshold(db.column("patient", "city"))
    dept = department[_choice(rng, db.column("doctor", "department_id")) - 1][1]
    doc = doctor[_choice(rng, db.column("appointment", "doctor_id")) - 1][1]
    db.questions = [
        ("How many doctors are there?", "SELECT count(*) FROM doctor"),
        (f"How many patients are older than {age}?", f"SELECT count(*) FROM patient WHERE age > {age}"),
        ("List the name and specialty of every doctor.", "SELECT name, specialty FROM doctor"),
        (f"What are the names of the patients who live in {city}?",
         f"SELECT name FROM patient WHERE city = {_lit(city)}"),
        (f"Which doctors have more than {years} years of experience? Give their names.",
         f"SELECT name FROM doctor WHERE years_experience > {years}"),
        ("What is the average cost of an appointment?", "SELECT avg(cost) FROM appointment"),
        ("What is the name of the most experienced doctor?",
         "SELECT name FROM doctor ORDER BY years_experience DESC LIMIT 1"),
        ("What are the distinct specialties of the doctors?", "SELECT DISTINCT specialty FROM doctor"),
        ("How many patients are there of each gender?",
         "SELECT gender, count(*) FROM patient GROUP BY gender"),
        (f"Which cities have more than {n} patients?",
         f"SELECT city FROM patient GROUP BY city HAVING count(*) > {n}"),
        (f"What are the names of the doctors who work in the {dept} department?",
         "SELECT T2.name FROM department AS T1 JOIN doctor AS T2 ON T1.department_id = T2.department_id "
         f"WHERE T1.name = {_lit(dept)}"),
        ("Show the name of each department and the number of doctors working in it.",
         "SELECT T1.name, count(*) FROM department AS T1 JOIN doctor AS T2 "
         "ON T1.department_id = T2.department_id GROUP BY T1.department_id"),
        (f"What are the names of the patients who had an appointment with {doc}?",
         "SELECT T3.name FROM doctor AS T1 JOIN appointment AS T2 ON T1.doctor_id = T2.doctor_id "
         f"JOIN patient AS T3 ON T2.patient_id = T3.patient_id WHERE T1.name = {_lit(doc)}"),
        ("What are the names of the patients who have never had an appointment?",
         "SELECT name FROM patient WHERE patient_id NOT IN (SELECT patient_id FROM appointment)"),
        ("Which doctors have more years of experience than the average doctor? Give their names.",
         "SELECT name FROM doctor WHERE years_experience > (SELECT avg(years_experience) FROM doctor)"),
        ("What is the total cost of the appointments of each doctor? Show the doctor names.",
         "SELECT T1.name, sum(T2.cost) FROM doctor AS T1 JOIN appointment AS T2 "
         "ON T1.doctor_id = T2.doctor_id GROUP BY T1.doctor_id"),
        ("Which doctor has the most appointments? Give the name.",
         "SELECT T1.name FROM doctor AS T1 JOIN appointment AS T2 ON T1.doctor_id = T2.doctor_id "
         "GROUP BY T1.doctor_id ORDER BY count(*) DESC LIMIT 1"),
    ]  # fmt: skip
    return db


DOMAINS: dict[str, Callable[[random.Random], Database]] = {
    "concert_singer": _concert_singer,
    "school": _school,
    "store": _store,
    "library": _library,
    "flights": _flights,
    "hospital": _hospital,
}

# ---------------------------------------------------------------------------------------------- writing


def _atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` via a temp file in the same directory and `os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs should be readable like ordinary files
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _create_sql(table: Table) -> str:
    parts = [f"{name} {typ}" for name, typ in table.columns]
    parts.append(f"PRIMARY KEY ({', '.join(table.primary_key)})")
    parts += [f"FOREIGN KEY ({col}) REFERENCES {ref} ({ref_col})" for col, ref, ref_col in table.foreign_keys]
    return f"CREATE TABLE {table.name} (\n  " + ",\n  ".join(parts) + "\n)"


def _write_sqlite(db: Database, path: Path) -> None:
    """Create the SQLite file for `db` at `path` atomically, replacing any stale file.

    The gold queries are checked on the temp file first, so a database that fails them never appears.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # Leftovers of an earlier or killed run: the old file, its journals and orphaned temp files.
    stale = [path, Path(f"{path}-journal"), Path(f"{path}-wal"), Path(f"{path}-shm")]
    for old in [*stale, *path.parent.glob(f".{path.name}.*.tmp")]:
        old.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o644)
        con = sqlite3.connect(tmp)
        try:
            con.execute("PRAGMA foreign_keys = ON")  # rows must satisfy the declared constraints
            for table in db.tables:
                con.execute(_create_sql(table))
                marks = ", ".join("?" * len(table.columns))
                con.executemany(f"INSERT INTO {table.name} VALUES ({marks})", db.rows[table.name])
            con.commit()
            _check_gold(db, con)
        finally:
            con.close()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_TOP_K = re.compile(r"ORDER BY (.+?)(?: DESC)? LIMIT (\d+)$")


def _check_gold(db: Database, con: sqlite3.Connection) -> None:
    """Raise ValueError if a question repeats, or a gold query returns no rows, counts zero or has a
    tie at its LIMIT cut-off (an ambiguous answer)."""
    questions = [q for q, _ in db.questions]
    dupes = [q for q, c in Counter(questions).items() if c > 1]
    if dupes:
        raise ValueError(f"{db.db_id}: duplicate questions {dupes}")
    for question, query in db.questions:
        rows = con.execute(query).fetchall()
        if not rows:
            raise ValueError(f"{db.db_id}: gold query returns no rows: {query!r} ({question!r})")
        if query.startswith("SELECT count(*) FROM") and "GROUP BY" not in query and not rows[0][0]:
            raise ValueError(f"{db.db_id}: count query answers 0: {query!r}")
        top_k = _TOP_K.search(query)
        if top_k:
            # Select the sort key and one row past the limit: equal keys there mean an ambiguous answer.
            key, k = top_k.group(1), int(top_k.group(2))
            head = query[: top_k.start()].replace("SELECT ", f"SELECT {key}, ", 1)
            probe = f"{head}{top_k.group(0).rsplit(' LIMIT ', 1)[0]} LIMIT {k + 1}"
            ranked = con.execute(probe).fetchall()
            if len(ranked) > k and ranked[k - 1][0] == ranked[k][0]:
                raise ValueError(f"{db.db_id}: tie at the LIMIT of {query!r}")


def tables_entry(db: Database) -> dict[str, Any]:
    """The Spider tables.json record for `db`."""
    columns: list[list[Any]] = [[-1, "*"]]
    types = ["text"]
    index: dict[tuple[str, str], int] = {}
    for t_idx, table in enumerate(db.tables):
        for name, typ in table.columns:
            index[(table.name, name)] = len(columns)
            columns.append([t_idx, name])
            types.append("text" if typ == "TEXT" else "number")
    primary_keys = [index[(t.name, c)] for t in db.tables for c in t.primary_key]
    foreign_keys = [
        [index[(t.name, col)], index[(ref, ref_col)]]
        for t in db.tables
        for col, ref, ref_col in t.foreign_keys
    ]
    return {
        "db_id": db.db_id,
        "table_names_original": [t.name for t in db.tables],
        "table_names": [t.name.replace("_", " ") for t in db.tables],
        "column_names_original": columns,
        "column_names": [[t, name.replace("_", " ")] for t, name in columns],
        "column_types": types,
        "primary_keys": primary_keys,
        "foreign_keys": foreign_keys,
    }


FEATURE_PATTERNS: dict[str, str] = {
    "count": r"\bcount\(",
    "where": r"\bWHERE\b",
    "join": r"\bJOIN\b",
    "three_table_join": r"\bJOIN\b.*\bJOIN\b",
    "group_by": r"\bGROUP BY\b",
    "having": r"\bHAVING\b",
    "order_by": r"\bORDER BY\b",
    "nested": r"\(SELECT\b",
    "distinct": r"\bDISTINCT\b",
}


def feature_counts(records: Sequence[dict[str, str]]) -> dict[str, int]:
    """How many gold queries in `records` use each SQL feature of `FEATURE_PATTERNS`."""
    return {
        name: sum(1 for r in records if re.search(pattern, r["query"]))
        for name, pattern in FEATURE_PATTERNS.items()
    }


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def build_demo(out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Write the demo databases, train/dev question files and tables.json under `out_dir`.

    Returns a summary: databases and question counts per split, and SQL feature counts.
    """
    out_dir = Path(out_dir)
    databases: list[Database] = []
    for db_id in (*TRAIN_DB_IDS, *DEV_DB_IDS):
        # One generator per database, so changing one domain leaves the others' data unchanged.
        db = DOMAINS[db_id](random.Random(f"{seed}/{db_id}"))
        path = out_dir / "database" / db_id / f"{db_id}.sqlite"
        _write_sqlite(db, path)
        databases.append(db)
    splits = {"train": TRAIN_DB_IDS, "dev": DEV_DB_IDS}
    summary: dict[str, Any] = {"seed": seed}
    all_records: list[dict[str, str]] = []
    for split, db_ids in splits.items():
        records = [
            {"db_id": db.db_id, "question": q, "query": sql}
            for db in databases
            if db.db_id in db_ids
            for q, sql in db.questions
        ]
        _atomic_write_text(out_dir / f"{split}.json", _dumps(records))
        all_records += records
        summary[split] = {"databases": list(db_ids), "questions": len(records)}
    _atomic_write_text(out_dir / "tables.json", _dumps([tables_entry(db) for db in databases]))
    summary["features"] = feature_counts(all_records)
    return summary
