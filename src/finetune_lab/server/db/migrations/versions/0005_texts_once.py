"""Prompts and ground truths stored once per job (`prediction_texts`), referenced by id.

The rows move: each job's distinct texts go into `prediction_texts` (keyed by the first 16
bytes of the SHA-256 of their UTF-8 form, what the server computes at ingest), then the
predictions table is rebuilt with `prompt_text_id` / `truth_text_id` in place of the texts and
its old copy dropped (a rebuild, not an UPDATE: PostgreSQL would keep the dropped columns' bytes
in every row until a rewrite). Row ids and the id sequence carry over. Also adds the
(job_id, sample_index) index the matrix's sample count walks.

SQLite keeps the freed pages for reuse; `VACUUM` returns them to the file system.

Revision ID: 0005
Revises: 0004
"""

import hashlib
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Json = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)
OLD = "predictions_0004"
SEQUENCE = "predictions_id_seq"  # PostgreSQL: the id sequence 0001's BIGSERIAL made

# Columns both shapes share, in table order around the texts.
HEAD = ("id", "job_id", "user_id", "epoch", "step", "sample_index")
TAIL = (
    "prediction",
    "created_at",
    "exact_match",
    "char_error_rate",
    "length_ratio",
    "word_overlap",
    "prompt_id",
    "source_index",
    "sample_source",
    "sample_source_id",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "latency_ms",
    "max_new_tokens",
    "do_sample",
    "validation_pass",
    "validation_kind",
    "validation_errors",
    "metrics",
)


def _tail_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("prediction", sa.Text, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("exact_match", sa.Float),
        sa.Column("char_error_rate", sa.Float),
        sa.Column("length_ratio", sa.Float),
        sa.Column("word_overlap", sa.Float),
        sa.Column("prompt_id", sa.String(256)),
        sa.Column("source_index", sa.BigInteger),
        sa.Column("sample_source", sa.String(1024)),
        sa.Column("sample_source_id", sa.String(1024)),
        sa.Column("prompt_tokens", sa.BigInteger),
        sa.Column("completion_tokens", sa.BigInteger),
        sa.Column("total_tokens", sa.BigInteger),
        sa.Column("latency_ms", sa.Float),
        sa.Column("max_new_tokens", sa.BigInteger),
        sa.Column("do_sample", sa.Boolean),
        sa.Column("validation_pass", sa.Boolean),
        sa.Column("validation_kind", sa.String(64)),
        sa.Column("validation_errors", Json),
        sa.Column("metrics", Json),
    ]


def _head_columns(postgres: bool) -> list[sa.Column[Any]]:
    if postgres:  # the sequence the old table's BIGSERIAL owned keeps counting
        id_column = sa.Column(
            "id",
            sa.BigInteger,
            primary_key=True,
            autoincrement=False,
            server_default=sa.text(f"nextval('{SEQUENCE}'::regclass)"),
        )
    else:
        id_column = sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)
    return [
        id_column,
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("user_id", BigId, nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.Column("sample_index", sa.BigInteger, nullable=False),
    ]


def _digest_sql(bind: sa.engine.Connection) -> Callable[[str], str]:
    """SQL computing the server's text digest (services/texts.py) of a column."""
    if bind.dialect.name == "postgresql":
        return lambda column: f"substring(sha256(convert_to({column}, 'UTF8')) from 1 for 16)"

    def digest(text: str | None) -> bytes | None:
        return None if text is None else hashlib.sha256(text.encode("utf-8")).digest()[:16]

    raw = bind.connection.driver_connection
    raw.create_function("finetune_lab_digest", 1, digest, deterministic=True)  # type: ignore[union-attr]
    return lambda column: f"finetune_lab_digest({column})"


def _set_aside_old_table(postgres: bool) -> None:
    """Rename the old table out of the way and free the names its indexes hold."""
    if postgres:
        op.execute(f"ALTER SEQUENCE {SEQUENCE} OWNED BY NONE")
    op.rename_table("predictions", OLD)
    if postgres:
        op.execute(f"ALTER TABLE {OLD} DROP CONSTRAINT uq_predictions_job_step_sample")
        op.execute(f"ALTER TABLE {OLD} DROP CONSTRAINT predictions_pkey")
    op.drop_index("ix_predictions_read_order", table_name=OLD)


def _finish(postgres: bool, extra_indexes: bool) -> None:
    op.drop_table(OLD)
    if postgres:
        op.execute(f"ALTER SEQUENCE {SEQUENCE} OWNED BY predictions.id")
    op.create_index(
        "ix_predictions_read_order", "predictions", ["job_id", "epoch", "step", "sample_index"]
    )
    if extra_indexes:
        op.create_index("ix_predictions_job_sample", "predictions", ["job_id", "sample_index"])
        op.create_index("ix_predictions_prompt_text", "predictions", ["prompt_text_id"])
        op.create_index("ix_predictions_truth_text", "predictions", ["truth_text_id"])


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    op.create_table(
        "prediction_texts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("digest", sa.LargeBinary(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.UniqueConstraint("job_id", "digest", name="uq_prediction_texts_job_digest"),
    )
    digest = _digest_sql(bind)
    for column in ("prompt", "ground_truth"):  # prompts first: a job's ids follow its rows
        op.execute(
            "INSERT INTO prediction_texts (job_id, digest, text) "
            f"SELECT job_id, {digest(column)}, {column} FROM predictions "
            f"WHERE {column} IS NOT NULL ORDER BY id "
            "ON CONFLICT (job_id, digest) DO NOTHING"
        )
    _set_aside_old_table(postgres)
    op.create_table(
        "predictions",
        *_head_columns(postgres),
        sa.Column("prompt_text_id", BigId, nullable=False),
        sa.Column("truth_text_id", BigId),
        *_tail_columns(),
        sa.UniqueConstraint(
            "job_id", "step", "sample_index", name="uq_predictions_job_step_sample"
        ),
    )
    head = ", ".join(f"o.{name}" for name in HEAD)
    tail = ", ".join(f"o.{name}" for name in TAIL)
    op.execute(
        f"INSERT INTO predictions ({', '.join(HEAD)}, prompt_text_id, truth_text_id, "
        f"{', '.join(TAIL)}) "
        f"SELECT {head}, pt.id, gt.id, {tail} FROM {OLD} o "
        "JOIN prediction_texts pt "
        f"ON pt.job_id = o.job_id AND pt.digest = {digest('o.prompt')} "
        "LEFT JOIN prediction_texts gt "
        f"ON gt.job_id = o.job_id AND gt.digest = {digest('o.ground_truth')}"
    )
    _finish(postgres, extra_indexes=True)


def downgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    for name in ("ix_predictions_job_sample", "ix_predictions_prompt_text"):
        op.drop_index(name, table_name="predictions")
    op.drop_index("ix_predictions_truth_text", table_name="predictions")
    _set_aside_old_table(postgres)
    op.create_table(
        "predictions",
        *_head_columns(postgres),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("ground_truth", sa.Text),
        *_tail_columns(),
        sa.UniqueConstraint(
            "job_id", "step", "sample_index", name="uq_predictions_job_step_sample"
        ),
    )
    head = ", ".join(f"o.{name}" for name in HEAD)
    tail = ", ".join(f"o.{name}" for name in TAIL)
    op.execute(
        f"INSERT INTO predictions ({', '.join(HEAD)}, prompt, ground_truth, {', '.join(TAIL)}) "
        f"SELECT {head}, pt.text, gt.text, {tail} FROM {OLD} o "
        "JOIN prediction_texts pt ON pt.id = o.prompt_text_id "
        "LEFT JOIN prediction_texts gt ON gt.id = o.truth_text_id"
    )
    _finish(postgres, extra_indexes=False)
    op.drop_table("prediction_texts")
