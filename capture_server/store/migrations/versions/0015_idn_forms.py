"""idn_forms: stored addresses and domains with IDNA ("xn--") labels in their Unicode form

Revision ID: 0015_idn_forms
Revises: 0014_webhook_version
Create Date: 2026-12-03

Addresses and domains are now matched in one form (pipeline/canonical.py): `müller.de`
whether the mail wrote `müller.de` or `xn--mller-kva.de`. Rows stored before in the ASCII
form are rewritten, so a contact, a user, an account domain or a never-log entry keeps
matching. A row whose Unicode form already exists beside it (the same person stored twice,
once in each form) is left as it is: `contacts duplicates` lists the pair and `contacts
merge SLUG KEEP MERGED`, given the addresses as stored, joins them. Participants and
events keep what the mail wrote. Tombstones are hashes: the pipeline checks both forms.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op
from sqlalchemy.exc import IntegrityError

from capture_server.pipeline.canonical import (
    canonical_address,
    canonical_domain,
    canonical_pattern,
)

revision = "0015_idn_forms"
down_revision = "0014_webhook_version"
branch_labels = None
depends_on = None


COLUMNS: tuple[tuple[str, str, Callable[[str], str]], ...] = (
    ("account_domain", "domain", canonical_domain),
    ("app_user", "email", canonical_address),
    ("user_address", "address", canonical_address),
    ("never_log", "pattern", canonical_pattern),
    ("contact", "primary_address", canonical_address),
    ("contact_address", "address", canonical_address),
    ("company", "domain", canonical_domain),
)


def upgrade() -> None:
    connection = op.get_bind()
    for table_name, column_name, canonical in COLUMNS:
        table = sa.table(table_name, sa.column("id", sa.Integer()), sa.column(column_name))
        column = table.c[column_name]
        rows = connection.execute(sa.select(table.c.id, column).where(column.like("%xn--%"))).all()
        for row_id, value in rows:
            wanted = canonical(value)
            if wanted == value:
                continue
            try:
                with connection.begin_nested():  # a unique clash undoes this row alone
                    connection.execute(
                        table.update().where(table.c.id == row_id).values({column_name: wanted})
                    )
            except IntegrityError:
                continue  # its Unicode form is stored already: both stay


def downgrade() -> None:
    """Nothing to undo: older code matches the Unicode form as it is written."""
