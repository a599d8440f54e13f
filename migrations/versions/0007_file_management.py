"""file management: earlier versions kept apart from the trash, and a searchable file name

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
from __future__ import annotations

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("objects") as batch:
        batch.add_column(sa.Column("replaced_by", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("name_folded", sa.String(length=255), nullable=True))
        batch.create_index("ix_objects_org_name", ["org_id", "name_folded"], unique=False)
    objects = sa.table("objects", sa.column("id", sa.String), sa.column("path", sa.String),
                       sa.column("name_folded", sa.String))
    conn = op.get_bind()
    for object_id, path in conn.execute(sa.select(objects.c.id, objects.c.path)).all():
        name = unicodedata.normalize("NFC", path.rsplit("/", 1)[-1].casefold())[:255]
        conn.execute(objects.update().where(objects.c.id == object_id).values(name_folded=name))


def downgrade() -> None:
    with op.batch_alter_table("objects") as batch:
        batch.drop_index("ix_objects_org_name")
        batch.drop_column("name_folded")
        batch.drop_column("replaced_by")
