"""Two small data sets in text2sql-data's format (data/README.md of jkkummerfeld/text2sql-data),
shaped like two of the real ones, written into a folder as that repository lays them out:

    minirest.json, minirest-schema.csv, minirest-db.added-in-2020.sqlite
        like restaurants: 10 cross-validation folds, a database whose RESTAURANT table names
        its key RESTAURANT_ID where the CSV and the SQL say ID (as the real file does), and one
        entry whose SQL fails on the database even so
    miniadv.json, miniadv-schema.csv
        like advising: train / dev / test / exclude labels, the CSV in MySQL DESCRIBE layout,
        no database (as in most copies of the repository)
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

REST_CSV = """Table Name, Field Name, Is Primary Key, Is Foreign Key, Type
RESTAURANT, ID,            y, n, int(11)
RESTAURANT, NAME,          n, n, varchar(255)
RESTAURANT, FOOD_TYPE,     n, n, varchar(255)
RESTAURANT, CITY_NAME,     n, y, varchar(255)
RESTAURANT, RATING,        n, n, "decimal(1,1)"
-, -, -, -, -
LOCATION, RESTAURANT_ID, y, y, int(11)
LOCATION, HOUSE_NUMBER,  n, n, int(11)
LOCATION, STREET_NAME,   n, n, varchar(255)
LOCATION, CITY_NAME,     n, y, varchar(255)
-, -, -, -, -
GEOGRAPHIC, CITY_NAME, y, y, varchar(255)
GEOGRAPHIC, COUNTY,    n, n, varchar(255)
GEOGRAPHIC, REGION,    n, n, varchar(255)
"""

REST_DB = """
CREATE TABLE GEOGRAPHIC (CITY_NAME varchar(255) PRIMARY KEY, COUNTY varchar(255), REGION varchar(255));
CREATE TABLE RESTAURANT (RESTAURANT_ID int(11) PRIMARY KEY, NAME varchar(255), FOOD_TYPE varchar(255),
                         CITY_NAME varchar(255), RATING decimal(1,1));
CREATE TABLE LOCATION (RESTAURANT_ID int(11) PRIMARY KEY, HOUSE_NUMBER int(11), STREET_NAME varchar(255),
                       CITY_NAME varchar(255));
INSERT INTO GEOGRAPHIC VALUES ('san francisco', 'san francisco county', 'bay area'),
                              ('palo alto', 'santa clara county', 'bay area'), ('fresno', 'fresno county', 'valley');
INSERT INTO RESTAURANT VALUES (1, 'jamerican cuisine', 'jamaican', 'san francisco', 2.5),
                              (2, 'buttercup kitchen', 'american', 'palo alto', 3.1),
                              (3, 'o''brien''s', 'irish', 'fresno', 2.2), (4, 'la taqueria', 'mexican', 'palo alto', 3.8);
INSERT INTO LOCATION VALUES (1, 100, 'bethel island rd', 'san francisco'), (2, 12, 'university ave', 'palo alto'),
                            (3, 7, 'blackstone ave', 'fresno'), (4, 2889, 'mission st', 'palo alto');
"""

CITIES = ["san francisco", "palo alto", "fresno"]
FOODS = ["jamaican", "american", "irish", "mexican"]

ADV_CSV = """Table Name, Field Name, Type, Is Foreign Key, Is Primary Key
COURSE, COURSE_ID,   int(11),       NO,   PRI,  0,     -
COURSE, NAME,        varchar(255),  YES,  -,    NULL,  -
COURSE, DEPARTMENT,  varchar(255),  YES,  -,    NULL,  -
COURSE, NUMBER,      varchar(255),  YES,  -,    NULL,  -
COURSE, CREDITS,     varchar(255),  YES,  -,    NULL,  -
-, -, -, -, -, -, -
COURSE_OFFERING, OFFERING_ID,  int(11),      NO,   PRI,  0,     -
COURSE_OFFERING, COURSE_ID,    int(11),      YES,  MUL,  NULL,  -
COURSE_OFFERING, SEMESTER,     int(11),      YES,  -,    NULL,  -
-, -, -, -, -, -, -
"""


def _sentence(text: str, split: str, **values: str) -> dict:
    return {"question-split": split, "text": text, "variables": values}


def _entry(sqls: list[str], query_split: str, sentences: list[dict], variables: list[tuple[str, str, str]]) -> dict:
    return {"comments": [], "old-name": "", "query-split": query_split, "sentences": sentences, "sql": sqls,
            "variables": [{"example": ex, "location": loc, "name": name, "type": name.rstrip("0123456789")}
                          for name, ex, loc in variables]}


def restaurants_entries() -> list[dict]:
    out = []
    for i, city in enumerate(CITIES * 2):  # 6 entries x 3 sentences, over all 10 folds
        out.append(_entry(
            ['SELECT COUNT( * ) FROM LOCATION AS LOCATIONalias0 , RESTAURANT AS RESTAURANTalias0 WHERE '
             'LOCATIONalias0.CITY_NAME = "city_name0" AND RESTAURANTalias0.ID = LOCATIONalias0.RESTAURANT_ID '
             'AND RESTAURANTalias0.FOOD_TYPE = "food_type0" ;'],
            str(i % 10),
            [_sentence("how many food_type0 restaurants are there in city_name0 ?", str((3 * i + k) % 10),
                       city_name0=city, food_type0=FOODS[(i + k) % 4]) for k in range(3)],
            [("city_name0", city, "both"), ("food_type0", "american", "both")]))
    out.append(_entry(  # the name holds a quote; two gold queries, both run
        ['SELECT LOCATIONalias0.HOUSE_NUMBER , RESTAURANTalias0.NAME FROM LOCATION AS LOCATIONalias0 , RESTAURANT '
         'AS RESTAURANTalias0 WHERE RESTAURANTalias0.NAME = "name0" AND RESTAURANTalias0.ID = LOCATIONalias0.RESTAURANT_ID ;',
         'SELECT LOCATIONalias0.HOUSE_NUMBER , RESTAURANTalias0.NAME FROM RESTAURANT AS RESTAURANTalias0 JOIN LOCATION '
         'AS LOCATIONalias0 ON RESTAURANTalias0.ID = LOCATIONalias0.RESTAURANT_ID WHERE RESTAURANTalias0.NAME = "name0" ;'],
        "6", [_sentence("where is name0 ?", "6", name0="o'brien's"), _sentence("where is name0 ?", "7", name0="")],
        [("name0", "la taqueria", "both")]))
    out.append(_entry(  # rated above a bare number variable
        ['SELECT RESTAURANTalias0.NAME FROM RESTAURANT AS RESTAURANTalias0 WHERE RESTAURANTalias0.RATING > rating0 ;'],
        "8", [_sentence("restaurants rated above rating0", str(k), rating0=str(2 + k / 10)) for k in range(10)],
        [("rating0", "2.5", "both")]))
    out.append(_entry(  # fails on the database even after the rename: dropped and named
        ['SELECT RESTAURANTalias0.STARS FROM RESTAURANT AS RESTAURANTalias0 WHERE RESTAURANTalias0.NAME = "name0" ;'],
        "9", [_sentence("how many stars does name0 have ?", "9", name0="la taqueria")],
        [("name0", "la taqueria", "both")]))
    return out


def advising_entries() -> list[dict]:
    out = []
    for i in range(12):
        split = ("train", "train", "dev", "test")[i % 4]
        out.append(_entry(
            ['SELECT DISTINCT COURSEalias0.NAME , COURSEalias0.CREDITS FROM COURSE AS COURSEalias0 WHERE '
             'COURSEalias0.DEPARTMENT = "department0" AND COURSEalias0.NUMBER = number0 ;'],
            split,
            [_sentence("how many credits is number0 ?", split, department0="", number0=str(400 + i)),
             _sentence("what is course number0 about ?", "exclude" if i % 3 == 0 else split, department0="",
                       number0=str(500 + i))],
            [("department0", "EECS", "sql-only"), ("number0", "595", "both")]))
    return out


def write(folder: Path, *, with_db: bool = True) -> Path:
    """Both data sets in `folder` (created); returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "minirest.json").write_text(json.dumps(restaurants_entries(), indent=1))
    (folder / "minirest-schema.csv").write_text(REST_CSV)
    if with_db:
        conn = sqlite3.connect(folder / "minirest-db.added-in-2020.sqlite")
        conn.executescript(REST_DB)
        conn.commit()
        conn.close()
    (folder / "miniadv.json").write_text(json.dumps(advising_entries(), indent=1))
    (folder / "miniadv-schema.csv").write_text(ADV_CSV)
    return folder
