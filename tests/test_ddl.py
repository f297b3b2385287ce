"""The one reader of CREATE TABLE text (sql/ddl.py): statements, names, types, keys, where each lies."""

from __future__ import annotations

from sqltune.sql import ddl
from sqltune.sql.ddl import Column, ForeignKey

SHOP = (
    "-- the shop database\n"
    'CREATE TABLE "order items" ("item id" INTEGER PRIMARY KEY, `order id` INT REFERENCES "orders"(id), '
    "qty INT, FOREIGN KEY (qty) REFERENCES stock(q));\n"
    "/* 3 rows of order items:\nitem id  order id  qty\n1  1  2\n*/\n\n"
    "create table Orders (id INTEGER PRIMARY KEY, placedAt DATE) WITHOUT ROWID;\n"
    "CREATE TABLE [stock] (q INT)"
)


def test_statements_keep_quoted_names_comments_and_references() -> None:
    preamble, items, orders, stock = ddl.statements(SHOP)
    assert (preamble.table, preamble.columns, preamble.text) == (None, (), "-- the shop database")
    assert items.table == "order items"
    assert items.column_names == ("item id", "order id", "qty")
    assert items.references == ("orders", "stock")
    assert items.text.endswith("1  1  2\n*/")  # the sample rows stay with their table
    assert (orders.table, orders.column_names, orders.references) == ("Orders", ("id", "placedAt"), ())
    assert (stock.table, stock.column_names) == ("stock", ("q",))
    assert all(s.parsed for s in (items, orders, stock))


def test_types_keys_and_references_of_each_column() -> None:
    _, items, orders, _ = ddl.statements(SHOP)
    assert items.columns[0] == Column("item id", "INTEGER", "INT", primary_key=True, unique=True)
    assert items.columns[1].ref == ("orders", "id") and items.columns[2].ref == ("stock", "q")
    assert items.primary_key == ("item id",)
    assert items.foreign_keys == (ForeignKey(("order id",), "orders", ("id",)), ForeignKey(("qty",), "stock", ("q",)))
    assert orders.columns[1] == Column("placedAt", "DATE", "DATE")


def test_each_statement_knows_where_it_lies_and_where_its_create_table_ends() -> None:
    statements = ddl.statements(SHOP)
    for s in statements:
        assert SHOP[s.start:s.start + len(s.text)] == s.text
    _, items, orders, stock = statements
    assert SHOP[:items.ddl_end].endswith("REFERENCES stock(q));")  # not after the comment that follows
    assert SHOP[:orders.ddl_end].endswith("WITHOUT ROWID;")  # table options are part of it
    assert stock.ddl_end == len(SHOP)


def test_mysql_ddl_is_read_as_mysql() -> None:
    """Read as SQLite, MySQL's `KEY idx (a)` would be a column named KEY."""
    (t,) = ddl.statements("CREATE TABLE `t` (`a` int NOT NULL AUTO_INCREMENT, b varchar(20), KEY `idx` (`a`), "
                          "PRIMARY KEY (a, b)) ENGINE=InnoDB DEFAULT CHARSET=utf8;")
    assert t.column_names == ("a", "b") and t.primary_key == ("a", "b")
    assert t.columns[0].not_null and not t.columns[0].unique  # a two-column key makes neither column unique


def test_a_table_level_key_of_one_column_marks_that_column() -> None:
    (t,) = ddl.statements('CREATE TABLE "stadium" ("Stadium_ID" int, "Name" text, PRIMARY KEY ("Stadium_ID"))')
    assert t.columns[0] == Column("Stadium_ID", "INTEGER", "INT", primary_key=True, unique=True)
    assert t.primary_key == ("Stadium_ID",) and not t.columns[1].unique


def test_a_named_constraint_is_read_as_its_key() -> None:
    (t,) = ddl.statements("CREATE TABLE `concert` (`id` int NOT NULL, `Stadium_ID` int DEFAULT NULL, "
                          "CONSTRAINT `pk` PRIMARY KEY (`id`), KEY `fk_stadium` (`Stadium_ID`), "
                          "CONSTRAINT `fk_stadium` FOREIGN KEY (`Stadium_ID`) REFERENCES `Stadium` (`Stadium_ID`))")
    assert t.primary_key == ("id",) and t.columns[0].unique
    assert t.foreign_keys == (ForeignKey(("Stadium_ID",), "Stadium", ("Stadium_ID",)),)
    assert t.columns[1].ref == ("stadium", "stadium_id") and not t.columns[1].unique


def test_create_tables_without_semicolons_between_them() -> None:
    found = ddl.statements("CREATE TABLE a (x INT)\nCREATE TABLE b (y INT REFERENCES a(x))")
    assert [(s.table, s.column_names, s.references) for s in found] == [("a", ("x",), ()), ("b", ("y",), ("a",))]


def test_falls_back_to_a_regex_when_no_dialect_reads_it() -> None:
    broken = ('CREATE TABLE "order lines" (`line id` INTEGER PRIMARY KEY, qty ??? INT, '
              'order_id INT REFERENCES "orders"(id), CONSTRAINT fk FOREIGN KEY (qty) REFERENCES [stock items](q))')
    (s,) = ddl.statements(broken)
    assert (s.table, s.column_names, s.references, s.text) == (
        "order lines", ("line id", "qty", "order_id"), ("orders", "stock items"), broken)
    assert not s.parsed and s.columns[0].decl == "" and s.foreign_keys == ()


def test_text_without_create_table_is_one_anonymous_statement() -> None:
    (s,) = ddl.statements("singer: id, name, age")
    assert (s.table, s.columns, s.text, s.parsed) == (None, (), "singer: id, name, age", False)
