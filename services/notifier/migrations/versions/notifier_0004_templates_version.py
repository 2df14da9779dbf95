"""templates version: a counter bumped by every change of template_overrides

Revision ID: notifier_0004
Revises: notifier_0003
"""

from alembic import op

revision = "notifier_0004"
down_revision = "notifier_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The notifier caches the overrides and reads this counter in the statement that
    # locks a batch's inboxes: an override saved through any replica applies to the next
    # batch everywhere. A trigger, not the writers, bumps it, so a replica of an older
    # release that still writes overrides without knowing the counter keeps it exact.
    op.execute(
        "CREATE TABLE notifier.templates_state ("
        " id boolean PRIMARY KEY DEFAULT true CHECK (id),"
        " version bigint NOT NULL DEFAULT 0)"
    )
    op.execute("INSERT INTO notifier.templates_state (id, version) VALUES (true, 0)")
    op.execute(
        "CREATE FUNCTION notifier.bump_templates_version() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN "
        "UPDATE notifier.templates_state SET version = version + 1; RETURN NULL; "
        "END $$"
    )
    op.execute(
        "CREATE TRIGGER template_overrides_changed "
        "AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON notifier.template_overrides "
        "FOR EACH STATEMENT EXECUTE FUNCTION notifier.bump_templates_version()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER template_overrides_changed ON notifier.template_overrides")
    op.execute("DROP FUNCTION notifier.bump_templates_version()")
    op.execute("DROP TABLE notifier.templates_state")
