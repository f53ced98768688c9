"""PostgreSQL: heartbeats' container reference checked once per statement, not once per row

The foreign key from heartbeats to containers ran a lookup and a row lock per inserted heartbeat:
~8 ms of server CPU in a 1,000-sample cycle, a third of the whole cycle (bench/ingest_compare.py).
On PostgreSQL it is replaced by statement-level triggers that keep each rule of the foreign key:

- a heartbeat inserted (or updated) must name an existing container: one statement locks every
  container the new rows name `FOR KEY SHARE`, as the foreign key's check does row by row (a
  concurrent delete of one waits for this transaction, or this one finds it gone and is refused
  with SQLSTATE 23503, foreign_key_violation, the foreign key's own error);
- deleting containers deletes their heartbeats (ON DELETE CASCADE);
- a container's id cannot change, nor `containers` be truncated alone, while heartbeats name it
  (the foreign key's NO ACTION). Statement-level, with no transition tables on `containers`: a
  heartbeat cycle's UPDATE of containers pays nothing for them.

SQLite keeps its foreign key (its check costs no round trip and no WAL record).

Revision ID: 0007_pg_heartbeat_check
Revises: 0006_checkpoints
Create Date: 2026-11-30 08:40:00.000000
"""

from alembic import op

revision = "0007_pg_heartbeat_check"
down_revision = "0006_checkpoints"
branch_labels = None
depends_on = None

FK = "heartbeats_container_id_fkey"

UPGRADE = [
    f"ALTER TABLE heartbeats DROP CONSTRAINT {FK}",
    """
    CREATE FUNCTION parhelia_heartbeats_check_container() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        wanted bigint;
        held bigint;
        missing text;
    BEGIN
        SELECT count(DISTINCT container_id) INTO wanted FROM new_rows;
        -- one statement locks them all; a row deleted meanwhile is not locked, so not counted
        SELECT count(*) INTO held FROM (
            SELECT 1 FROM containers c WHERE c.id IN (SELECT container_id FROM new_rows)
            FOR KEY SHARE OF c
        ) AS locked;
        IF held < wanted THEN
            SELECT n.container_id INTO missing FROM new_rows n
            WHERE NOT EXISTS (SELECT 1 FROM containers c WHERE c.id = n.container_id) LIMIT 1;
            RAISE EXCEPTION 'insert or update on table "heartbeats" names no container'
                USING ERRCODE = 'foreign_key_violation',
                      DETAIL = format('Key (container_id)=(%s) is not present in table '
                                      '"containers".', coalesce(missing, '?'));
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER heartbeats_check_container_insert AFTER INSERT ON heartbeats
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION parhelia_heartbeats_check_container()
    """,
    """
    CREATE TRIGGER heartbeats_check_container_update AFTER UPDATE ON heartbeats
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION parhelia_heartbeats_check_container()
    """,
    """
    CREATE FUNCTION parhelia_containers_delete_heartbeats() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM heartbeats h USING old_rows o WHERE h.container_id = o.id;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER containers_delete_heartbeats AFTER DELETE ON containers
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION parhelia_containers_delete_heartbeats()
    """,
    # Fired only by a statement that sets `id` or truncates: never by a heartbeat cycle. It looks
    # for any heartbeat left without its container (the id's old value is not at hand without a
    # transition table on every containers UPDATE).
    """
    CREATE FUNCTION parhelia_containers_keep_heartbeats() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        orphan text;
    BEGIN
        SELECT h.container_id INTO orphan FROM heartbeats h
        WHERE NOT EXISTS (SELECT 1 FROM containers c WHERE c.id = h.container_id) LIMIT 1;
        IF orphan IS NOT NULL THEN
            RAISE EXCEPTION 'update or truncate on table "containers" leaves heartbeats of %',
                orphan USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER containers_keep_heartbeats_id AFTER UPDATE OF id ON containers
    FOR EACH STATEMENT EXECUTE FUNCTION parhelia_containers_keep_heartbeats()
    """,
    """
    CREATE TRIGGER containers_keep_heartbeats_truncate AFTER TRUNCATE ON containers
    FOR EACH STATEMENT EXECUTE FUNCTION parhelia_containers_keep_heartbeats()
    """,
]

DOWNGRADE = [
    "DROP TRIGGER containers_keep_heartbeats_truncate ON containers",
    "DROP TRIGGER containers_keep_heartbeats_id ON containers",
    "DROP FUNCTION parhelia_containers_keep_heartbeats()",
    "DROP TRIGGER containers_delete_heartbeats ON containers",
    "DROP FUNCTION parhelia_containers_delete_heartbeats()",
    "DROP TRIGGER heartbeats_check_container_update ON heartbeats",
    "DROP TRIGGER heartbeats_check_container_insert ON heartbeats",
    "DROP FUNCTION parhelia_heartbeats_check_container()",
    f"ALTER TABLE heartbeats ADD CONSTRAINT {FK} FOREIGN KEY (container_id) "
    "REFERENCES containers (id) ON DELETE CASCADE",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for sql in UPGRADE:
            op.execute(sql)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for sql in DOWNGRADE:
            op.execute(sql)
