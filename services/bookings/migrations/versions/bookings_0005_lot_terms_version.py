"""lots.terms_version: bumped by every change of a lot, its slots or its staff

Revision ID: bookings_0005
Revises: bookings_0004
"""

from alembic import op

revision = "bookings_0005"
down_revision = "bookings_0004"
branch_labels = None
depends_on = None

_BUMP_CHANGED = """
CREATE FUNCTION bookings.bump_terms_of_changed_lots() RETURNS trigger
LANGUAGE plpgsql AS $$ BEGIN
    UPDATE bookings.lots SET terms_version = terms_version + 1
    WHERE id IN (SELECT lot_id FROM changed_rows);
    RETURN NULL;
END $$
"""
_BUMP_ALL = """
CREATE FUNCTION bookings.bump_terms_of_all_lots() RETURNS trigger
LANGUAGE plpgsql AS $$ BEGIN
    UPDATE bookings.lots SET terms_version = terms_version + 1;
    RETURN NULL;
END $$
"""
_BUMP_LOT = """
CREATE FUNCTION bookings.bump_lot_terms() RETURNS trigger
LANGUAGE plpgsql AS $$ BEGIN
    NEW.terms_version := OLD.terms_version + 1;
    RETURN NEW;
END $$
"""


def upgrade() -> None:
    # The bookings service keeps what a create copies from a lot, its slots and its
    # staff (services/bookings/terms.py) with the lot's terms_version, and checks it in
    # the create's own statement: a change saved through any replica makes the next
    # create of that lot read afresh everywhere. Triggers, not the writers, bump it, so
    # any writer (an older replica, an operator's SQL) keeps it exact. The default
    # makes no table rewrite (PostgreSQL 11+).
    op.execute("ALTER TABLE bookings.lots ADD COLUMN terms_version bigint NOT NULL DEFAULT 0")
    op.execute(_BUMP_LOT)
    op.execute(_BUMP_CHANGED)
    op.execute(_BUMP_ALL)
    op.execute(
        "CREATE TRIGGER lots_terms_changed BEFORE UPDATE ON bookings.lots "
        "FOR EACH ROW EXECUTE FUNCTION bookings.bump_lot_terms()"
    )
    for table in ("slots", "staff"):
        # A trigger with transition tables names one event; UPDATE bumps the old lot.
        for event, rows in (("INSERT", "NEW"), ("UPDATE", "OLD"), ("DELETE", "OLD")):
            op.execute(
                f"CREATE TRIGGER {table}_{event.lower()}_terms_changed AFTER {event} "
                f"ON bookings.{table} REFERENCING {rows} TABLE AS changed_rows "
                "FOR EACH STATEMENT EXECUTE FUNCTION bookings.bump_terms_of_changed_lots()"
            )
        op.execute(
            f"CREATE TRIGGER {table}_truncate_terms_changed AFTER TRUNCATE "
            f"ON bookings.{table} FOR EACH STATEMENT "
            "EXECUTE FUNCTION bookings.bump_terms_of_all_lots()"
        )


def downgrade() -> None:
    for table in ("slots", "staff"):
        for event in ("insert", "update", "delete", "truncate"):
            op.execute(f"DROP TRIGGER {table}_{event}_terms_changed ON bookings.{table}")
    op.execute("DROP TRIGGER lots_terms_changed ON bookings.lots")
    op.execute("DROP FUNCTION bookings.bump_terms_of_all_lots()")
    op.execute("DROP FUNCTION bookings.bump_terms_of_changed_lots()")
    op.execute("DROP FUNCTION bookings.bump_lot_terms()")
    op.execute("ALTER TABLE bookings.lots DROP COLUMN terms_version")
