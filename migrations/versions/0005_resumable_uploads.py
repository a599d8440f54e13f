"""resumable (tus) uploads: the state of each upload in progress

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resumable_uploads",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("overwrite", sa.Boolean(), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(length=200), nullable=True),
        sa.Column("object_id", sa.String(length=32), nullable=False),
        sa.Column("storage_id", sa.String(length=64), nullable=False),
        sa.Column("s3_key", sa.String(length=300), nullable=False),
        sa.Column("encryption", sa.String(length=8), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("wrapped_data_key", sa.LargeBinary(), nullable=False),
        sa.Column("envelope_header", sa.LargeBinary(), nullable=True),
        sa.Column("multipart_id", sa.String(length=1024), nullable=True),
        sa.Column("parts", sa.Text(), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("interim_size", sa.BigInteger(), nullable=False),
        sa.Column("digest_state", sa.LargeBinary(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("lock_token", sa.String(length=64), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"]),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("s3_key"),
        sa.UniqueConstraint("storage_id"),
    )
    op.create_index(op.f("ix_resumable_uploads_org_id"), "resumable_uploads", ["org_id"])
    op.create_index(op.f("ix_resumable_uploads_status"), "resumable_uploads", ["status"])
    op.create_index(op.f("ix_resumable_uploads_expires_at"), "resumable_uploads", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_resumable_uploads_expires_at"), table_name="resumable_uploads")
    op.drop_index(op.f("ix_resumable_uploads_status"), table_name="resumable_uploads")
    op.drop_index(op.f("ix_resumable_uploads_org_id"), table_name="resumable_uploads")
    op.drop_table("resumable_uploads")
