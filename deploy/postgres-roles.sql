-- medchat PostgreSQL roles: the service cannot rewrite its own audit trail.
--
-- SECURITY-MODEL "Audit": the audit log and the sealed-archive ledger are append-only and
-- hash-chained, and "the app's production database role has no UPDATE or DELETE on the audit
-- and ledger tables". The MAC key outside the database makes a rewrite detectable; these
-- grants make it impossible for the running service (and for anyone who takes it over) to
-- perform one in the first place.
--
--   medchat_owner  owns the schema and the tables; runs `medchat db upgrade` once per deploy.
--                  Its password is kept off the app hosts.
--   medchat_app    the role the service connects as (MEDCHAT_DATABASE_URL on every app host):
--                  SELECT/INSERT/UPDATE/DELETE on the tables, except that audit_entries and
--                  archive_records accept only SELECT and INSERT. chain_heads keeps UPDATE:
--                  the head row of each chain moves forward on every append.
--
-- Nothing medchat does needs more: retention destroys expired archived content by deleting the
-- conversation rows (ciphertexts, wraps) and appending a "destroyed" record, so it runs as
-- medchat_app too. Work that would change or remove rows of an append-only table does not
-- exist; if it ever did, it would run as medchat_owner, like migrations.
--
-- Usage, as a superuser, in a database made for medchat:
--
--   createdb medchat
--   psql -d medchat -f deploy/postgres-roles.sql
--   psql -d medchat -c '\password medchat_owner'
--   psql -d medchat -c '\password medchat_app'
--
-- Other role names (several installations on one PostgreSQL server, or the bootstrap test):
--
--   psql -d medchat -v owner=other_owner -v app=other_app -f deploy/postgres-roles.sql
--
-- The file is idempotent. Run it again after every `medchat db upgrade`: the default
-- privileges below give a new table all four privileges, and only this file takes UPDATE and
-- DELETE back from the append-only ones (archive_records arrives in a later migration). It
-- ends by checking the result and fails if medchat_app can still rewrite an append-only table.

\set ON_ERROR_STOP on
\if :{?owner}
\else
    \set owner medchat_owner
\endif
\if :{?app}
\else
    \set app medchat_app
\endif

BEGIN;

-- The role names, for the DO blocks below (psql does not expand its variables inside them).
SET LOCAL medchat.owner_role TO :'owner';
SET LOCAL medchat.app_role TO :'app';

-- This file locks PUBLIC out of the database it runs in: never a shared system database.
DO $$
BEGIN
    IF current_database() IN ('postgres', 'template0', 'template1') THEN
        RAISE EXCEPTION 'run this file in the medchat database, not in %', current_database();
    END IF;
END
$$;

-- Roles: log in, and nothing else (no superuser, no role or database creation, no RLS bypass).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = current_setting('medchat.owner_role')) THEN
        EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION '
                       'NOBYPASSRLS', current_setting('medchat.owner_role'));
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = current_setting('medchat.app_role')) THEN
        EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION '
                       'NOBYPASSRLS', current_setting('medchat.app_role'));
    END IF;
END
$$;

-- The database: only the two roles connect.
DO $$
BEGIN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(),
                   current_setting('medchat.owner_role'));
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(),
                   current_setting('medchat.app_role'));
END
$$;

-- The schema: only the owner creates objects; the service uses them.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO :"owner";
GRANT USAGE ON SCHEMA public TO :"app";

-- Tables and sequences that exist now...
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"app";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :"app";

-- ...and those that the owner creates in later migrations.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO :"app";

-- Append-only tables: read and append, never rewrite. A table not created yet is skipped
-- (run this file again after the migration that creates it).
DO $$
DECLARE
    append_only text;
BEGIN
    FOREACH append_only IN ARRAY ARRAY['audit_entries', 'archive_records'] LOOP
        IF to_regclass(format('public.%I', append_only)) IS NULL THEN
            RAISE NOTICE 'table % does not exist yet: run this file again after migrating',
                append_only;
            CONTINUE;
        END IF;
        EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON public.%I FROM %I',
                       append_only, current_setting('medchat.app_role'));
    END LOOP;
END
$$;

-- The schema version is the owner's business: the service reads it (the `medchat db upgrade`
-- check before start) and never writes it.
DO $$
BEGIN
    IF to_regclass('public.alembic_version') IS NOT NULL THEN
        EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON public.alembic_version '
                       'FROM %I', current_setting('medchat.app_role'));
    END IF;
END
$$;

-- Check the result: fail (and roll everything back) if medchat_app could rewrite history.
DO $$
DECLARE
    append_only text;
    privilege text;
BEGIN
    FOREACH append_only IN ARRAY ARRAY['audit_entries', 'archive_records'] LOOP
        CONTINUE WHEN to_regclass(format('public.%I', append_only)) IS NULL;
        FOREACH privilege IN ARRAY ARRAY['UPDATE', 'DELETE', 'TRUNCATE'] LOOP
            IF has_table_privilege(current_setting('medchat.app_role'),
                                   format('public.%I', append_only), privilege)
            THEN
                RAISE EXCEPTION '% still has % on %', current_setting('medchat.app_role'),
                    privilege, append_only;
            END IF;
        END LOOP;
    END LOOP;
END
$$;

COMMIT;
