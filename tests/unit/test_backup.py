"""Choosing the PostgreSQL client tools for `parkmate backup` / `restore`."""

import pytest

from services.backup import newest_tool, pg_major


@pytest.mark.parametrize(
    ("line", "major"),
    [
        ("pg_dump (PostgreSQL) 16.2", 16),
        ("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)", 15),
        ("pg_restore (PostgreSQL) 17beta1", 17),
        ("pg_dump (PostgreSQL) 9.6.24", 9),
    ],
)
def test_the_major_version_is_read_from_the_version_line(line, major):
    assert pg_major(line) == major


def test_a_line_without_a_version_is_refused():
    with pytest.raises(ValueError, match="not a PostgreSQL tool version"):
        pg_major("command not found")


def test_the_newest_tool_wins_and_the_first_on_a_tie():
    found = [
        ("/usr/bin/pg_dump", "pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"),
        ("/venv/pgserver/bin/pg_dump", "pg_dump (PostgreSQL) 16.2"),
        ("/opt/pg16/bin/pg_dump", "pg_dump (PostgreSQL) 16.4"),
    ]
    assert newest_tool(found) == "/venv/pgserver/bin/pg_dump"
    assert newest_tool(found[:1]) == "/usr/bin/pg_dump"


def test_no_usable_tool_is_none():
    assert newest_tool([]) is None
    assert newest_tool([("/bin/false", "")]) is None
