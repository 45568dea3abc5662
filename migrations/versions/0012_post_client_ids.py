"""post client ids

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-21 14:20:26.763356

Posts take an optional client_id, as messages do: a retried create answers the first post.

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    # A nullable column is added without rewriting the table, and the index holds only rows with a client_id
    # (none yet), so this is quick even on a large posts table.
    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('client_id', sa.String(length=64), nullable=True))
        batch_op.create_index('uq_posts_author_id_client_id', ['author_id', 'client_id'], unique=True, sqlite_where=sa.text('client_id IS NOT NULL'), postgresql_where=sa.text('client_id IS NOT NULL'))



def downgrade():
    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.drop_index('uq_posts_author_id_client_id', sqlite_where=sa.text('client_id IS NOT NULL'), postgresql_where=sa.text('client_id IS NOT NULL'))
        batch_op.drop_column('client_id')

