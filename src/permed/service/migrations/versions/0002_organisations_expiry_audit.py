"""Organisations (tenancy), token expiry, the client address in audit rows, result checksums and
interruptions counted apart from attempts.

Existing uploads and non-admin tokens move to an organisation named "default"; the uploads' idempotency
keys are recomputed with it.

Revision ID: 0002
Revises: 0001
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    organisations = op.create_table(
        "organisations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    conn = op.get_bind()
    has_rows = conn.execute(sa.text("SELECT 1 FROM samples UNION SELECT 1 FROM api_tokens")).first()
    if has_rows:
        op.bulk_insert(organisations, [{"id": 1, "name": "default",
                                        "created_at": _now()}])
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("organisation_id", sa.Integer(), sa.ForeignKey("organisations.id",
                                   name="fk_api_tokens_organisation_id"), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(), nullable=True))
    if has_rows:
        conn.execute(sa.text("UPDATE api_tokens SET organisation_id = 1 WHERE role <> 'admin'"))
    with op.batch_alter_table("samples") as batch:
        batch.add_column(sa.Column("organisation_id", sa.Integer(), nullable=True))
    if has_rows:
        conn.execute(sa.text("UPDATE samples SET organisation_id = 1"))
        # the idempotency key now includes the organisation (app._request_key): the same request from two
        # organisations is two uploads. Recomputed here so a repeated upload still finds its old row.
        rows = conn.execute(sa.text("SELECT id, sha256, outside_calls, medications FROM samples")).all()
        for row_id, sha256, outside, meds in rows:
            key = hashlib.sha256("\0".join((sha256, outside or "", meds or "", "1")).encode()).hexdigest()
            conn.execute(sa.text("UPDATE samples SET request_key = :k WHERE id = :i"), {"k": key, "i": row_id})
    with op.batch_alter_table("samples") as batch:
        batch.alter_column("organisation_id", existing_type=sa.Integer(), nullable=False)
        batch.create_foreign_key("fk_samples_organisation_id", "organisations", ["organisation_id"], ["id"])
        batch.create_index("ix_samples_organisation_id", ["organisation_id"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("results_sha256", sa.Text(), nullable=True))
        batch.add_column(sa.Column("interruptions", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("audit_events") as batch:
        batch.alter_column("action", existing_type=sa.String(50), type_=sa.String(100), existing_nullable=False)
        batch.add_column(sa.Column("client", sa.String(100), nullable=True))


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC).replace(tzinfo=None)


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("client")
        batch.alter_column("action", existing_type=sa.String(100), type_=sa.String(50), existing_nullable=False)
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("interruptions")
        batch.drop_column("results_sha256")
    with op.batch_alter_table("samples") as batch:
        batch.drop_index("ix_samples_organisation_id")
        batch.drop_constraint("fk_samples_organisation_id", type_="foreignkey")
        batch.drop_column("organisation_id")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_constraint("fk_api_tokens_organisation_id", type_="foreignkey")
        batch.drop_column("expires_at")
        batch.drop_column("organisation_id")
    op.drop_table("organisations")
