"""Patient links: the EHR's FHIR Patient id of a stored patient (an upload and a VCF sample in it), per
organisation, for CDS Hooks calls.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patient_links",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("organisation_id", sa.Integer(), sa.ForeignKey("organisations.id"), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("sample_id", sa.Integer(), sa.ForeignKey("samples.id"), nullable=False),
        sa.Column("sample", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("api_tokens.id"), nullable=False),
        # one link per patient and organisation; also the index of the CDS lookup (organisation, patient)
        sa.UniqueConstraint("organisation_id", "patient_id", name="uq_patient_links_organisation_patient"),
    )
    op.create_index("ix_patient_links_sample_id", "patient_links", ["sample_id"])


def downgrade() -> None:
    op.drop_index("ix_patient_links_sample_id", "patient_links")
    op.drop_table("patient_links")
