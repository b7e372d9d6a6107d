"""Registry: customers, identity, commitment letters, inventory, IP and NAT assignments.

Revision ID: 0002_registry
Revises: 0001_core
Create Date: 2026-11-23 11:13:21.591600
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_registry"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "commitment_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("locale", sa.String(length=8), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commitment_templates")),
        sa.UniqueConstraint("version", "locale", name=op.f("uq_commitment_templates_version")),
    )
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("email_norm", sa.String(length=320), nullable=False),
        sa.Column("phone_enc", sa.LargeBinary(), nullable=True),
        sa.Column("phone_bidx", sa.String(length=64), nullable=False),
        sa.Column("phone_masked", sa.String(length=32), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("risk_tier", sa.String(length=8), nullable=False),
        sa.Column("identity_status", sa.String(length=16), nullable=False),
        sa.Column("terminated_for_abuse", sa.Boolean(), nullable=False),
        sa.Column("signup_ip", sa.String(length=64), nullable=False),
        sa.Column("device_fingerprint", sa.String(length=128), nullable=False),
        sa.Column("payment_fingerprint", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("external_id", name=op.f("uq_customers_external_id")),
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_customers_device_fingerprint"), ["device_fingerprint"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_customers_email_norm"), ["email_norm"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_customers_payment_fingerprint"), ["payment_fingerprint"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_customers_phone_bidx"), ["phone_bidx"], unique=False)
        batch_op.create_index(batch_op.f("ix_customers_signup_ip"), ["signup_ip"], unique=False)

    op.create_table(
        "machine_rooms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("licences", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_machine_rooms")),
        sa.UniqueConstraint("name", name=op.f("uq_machine_rooms_name")),
    )
    op.create_table(
        "nat_mappings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_ip", sa.String(length=64), nullable=False),
        sa.Column("port_start", sa.Integer(), nullable=False),
        sa.Column("port_end", sa.Integer(), nullable=False),
        sa.Column("private_ip", sa.String(length=64), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nat_mappings")),
    )
    with op.batch_alter_table("nat_mappings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_nat_mappings_public_ip"), ["public_ip"], unique=False)

    op.create_table(
        "registry_generation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_generation")),
    )
    op.create_table(
        "webhook_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("secret_enc", sa.LargeBinary(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_sources")),
        sa.UniqueConstraint("name", name=op.f("uq_webhook_sources_name")),
    )
    op.create_table(
        "ban_evasion_flags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("matched_customer_id", sa.Integer(), nullable=False),
        sa.Column("attributes", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=False),
        sa.Column("resolution_reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_ban_evasion_flags_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["matched_customer_id"],
            ["customers.id"],
            name=op.f("fk_ban_evasion_flags_matched_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ban_evasion_flags")),
    )
    with op.batch_alter_table("ban_evasion_flags", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ban_evasion_flags_customer_id"), ["customer_id"], unique=False
        )

    op.create_table(
        "document_scans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("filename", sa.String(length=300), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("uploaded_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_document_scans_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_document_scans")),
    )
    with op.batch_alter_table("document_scans", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_document_scans_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_document_scans_sha256"), ["sha256"], unique=False)

    op.create_table(
        "identity_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("doc_type", sa.String(length=32), nullable=False),
        sa.Column("other_type", sa.String(length=100), nullable=False),
        sa.Column("number_enc", sa.LargeBinary(), nullable=False),
        sa.Column("number_bidx", sa.String(length=64), nullable=False),
        sa.Column("number_masked", sa.String(length=64), nullable=False),
        sa.Column("override_reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_identity_documents_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_documents")),
    )
    with op.batch_alter_table("identity_documents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_identity_documents_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_identity_documents_number_bidx"), ["number_bidx"], unique=False
        )

    op.create_table(
        "instances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=True),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("room_id", sa.Integer(), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("terminated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_instances_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["room_id"], ["machine_rooms.id"], name=op.f("fk_instances_room_id_machine_rooms")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instances")),
        sa.UniqueConstraint("external_id", name=op.f("uq_instances_external_id")),
    )
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_instances_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "ip_ranges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cidr", sa.String(length=64), nullable=False),
        sa.Column("start_key", sa.String(length=32), nullable=False),
        sa.Column("end_key", sa.String(length=32), nullable=False),
        sa.Column("room_id", sa.Integer(), nullable=True),
        sa.Column("purpose", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["room_id"], ["machine_rooms.id"], name=op.f("fk_ip_ranges_room_id_machine_rooms")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ip_ranges")),
        sa.UniqueConstraint("cidr", name=op.f("uq_ip_ranges_cidr")),
    )
    with op.batch_alter_table("ip_ranges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ip_ranges_start_key"), ["start_key"], unique=False)

    op.create_table(
        "provisioning_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_provisioning_decisions_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provisioning_decisions")),
    )
    with op.batch_alter_table("provisioning_decisions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_provisioning_decisions_customer_id"), ["customer_id"], unique=False
        )

    op.create_table(
        "verification_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=50), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("provider_reference", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_verification_requests_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_requests")),
    )
    with op.batch_alter_table("verification_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_verification_requests_customer_id"), ["customer_id"], unique=False
        )

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("event_type", sa.String(length=50), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["webhook_sources.id"],
            name=op.f("fk_webhook_deliveries_source_id_webhook_sources"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("source_id", "event_id", name=op.f("uq_webhook_deliveries_source_id")),
    )
    op.create_table(
        "commitment_acceptances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("text_sha256", sa.String(length=64), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=400), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("scan_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_commitment_acceptances_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["scan_id"],
            ["document_scans.id"],
            name=op.f("fk_commitment_acceptances_scan_id_document_scans"),
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["commitment_templates.id"],
            name=op.f("fk_commitment_acceptances_template_id_commitment_templates"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commitment_acceptances")),
    )
    with op.batch_alter_table("commitment_acceptances", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_commitment_acceptances_customer_id"), ["customer_id"], unique=False
        )

    op.create_table(
        "domains",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.Integer(), nullable=True),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("icp_number", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_domains_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name=op.f("fk_domains_instance_id_instances")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domains")),
    )
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_domains_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_domains_name"), ["name"], unique=False)

    op.create_table(
        "ip_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(length=64), nullable=False),
        sa.Column("start_key", sa.String(length=32), nullable=False),
        sa.Column("end_key", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.Integer(), nullable=True),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_ip_assignments_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name=op.f("fk_ip_assignments_instance_id_instances")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ip_assignments")),
    )
    with op.batch_alter_table("ip_assignments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ip_assignments_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_ip_assignments_prefix"), ["prefix"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_ip_assignments_start_key"), ["start_key"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ip_assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ip_assignments_start_key"))
        batch_op.drop_index(batch_op.f("ix_ip_assignments_prefix"))
        batch_op.drop_index(batch_op.f("ix_ip_assignments_customer_id"))

    op.drop_table("ip_assignments")
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_domains_name"))
        batch_op.drop_index(batch_op.f("ix_domains_customer_id"))

    op.drop_table("domains")
    with op.batch_alter_table("commitment_acceptances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_commitment_acceptances_customer_id"))

    op.drop_table("commitment_acceptances")
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("verification_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_verification_requests_customer_id"))

    op.drop_table("verification_requests")
    with op.batch_alter_table("provisioning_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_provisioning_decisions_customer_id"))

    op.drop_table("provisioning_decisions")
    with op.batch_alter_table("ip_ranges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ip_ranges_start_key"))

    op.drop_table("ip_ranges")
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_instances_customer_id"))

    op.drop_table("instances")
    with op.batch_alter_table("identity_documents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_documents_number_bidx"))
        batch_op.drop_index(batch_op.f("ix_identity_documents_customer_id"))

    op.drop_table("identity_documents")
    with op.batch_alter_table("document_scans", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_document_scans_sha256"))
        batch_op.drop_index(batch_op.f("ix_document_scans_customer_id"))

    op.drop_table("document_scans")
    with op.batch_alter_table("ban_evasion_flags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ban_evasion_flags_customer_id"))

    op.drop_table("ban_evasion_flags")
    op.drop_table("webhook_sources")
    op.drop_table("registry_generation")
    with op.batch_alter_table("nat_mappings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_nat_mappings_public_ip"))

    op.drop_table("nat_mappings")
    op.drop_table("machine_rooms")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customers_signup_ip"))
        batch_op.drop_index(batch_op.f("ix_customers_phone_bidx"))
        batch_op.drop_index(batch_op.f("ix_customers_payment_fingerprint"))
        batch_op.drop_index(batch_op.f("ix_customers_email_norm"))
        batch_op.drop_index(batch_op.f("ix_customers_device_fingerprint"))

    op.drop_table("customers")
    op.drop_table("commitment_templates")
