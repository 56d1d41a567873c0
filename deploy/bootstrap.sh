#!/usr/bin/env bash
# The production bootstrap of one medchat host: the one sequence, in the one place.
#
# deploy/README.md ("Bootstrap of one host") and README.md ("Operations") quote the sequence
# below line for line (tests/unit/test_bootstrap_docs.py fails when they differ), and
# tests/e2e/test_bootstrap.py runs exactly these lines against a fresh PostgreSQL database with
# MEDCHAT_ENV=production, then has a member ask a question and the clinician read it.
#
# Before: the release installed in /opt/medchat (deploy/README.md steps 1-2), PostgreSQL
# reachable, and /etc/medchat/medchat.env copied from deploy/systemd/medchat.env.example with
# its values filled in, except the two this script writes (MEDCHAT_DATABASE_URL and
# MEDCHAT_ARCHIVE_SIGNING_PUBLIC_KEY). Run as root.
#
# -- sequence --
#   deploy/bootstrap.sh database
#   deploy/bootstrap.sh migrate
#   deploy/bootstrap.sh keys
#   systemctl enable --now medchat
#   deploy/bootstrap.sh admin "$ADMIN_EMAIL" "$ADMIN_FIRST_NAME" "$ADMIN_LAST_NAME"
#   # people: the admin enrolls with the printed token: /console/enroll (or POST /api/v1/auth/enroll, then /api/v1/auth/enroll/confirm)
#   # people: the admin signs in and creates the first clinician and compliance officer (POST /api/v1/admin/accounts); each enrolls the same way with their token
#   deploy/bootstrap.sh role-keys "$CLINICIAN_EMAIL" "$OFFICER_EMAIL"
# -- end --
#
# The stages:
#   database   as a PostgreSQL superuser: the database, the owner role (migrations) and the
#              service's least-privilege role (deploy/postgres-roles.sql), a new random password
#              for each; writes the service's MEDCHAT_DATABASE_URL into the environment file and
#              the owner's into a root-only file of its own (the owner's password stays off the
#              service's configuration). Again: new passwords, both files rewritten.
#   migrate    `medchat db upgrade` as the owner (a new database needs no server key: it runs
#              before they exist), the grants again (new tables; append-only tables lose UPDATE
#              and DELETE), and `medchat db current` as the service (its role reads the schema
#              at the head).
#   keys       the key directory (owner the service user, 0700), the server keys made by the
#              service user (`medchat keys server-init`: missing ones only), read-only (0400);
#              pins the archive-signing public key in the environment file.
#   admin      `medchat create-admin`: the first admin and its one-time enrollment token.
#   role-keys  `medchat keys init` for the two enrolled staff: the role keys, sealed to them,
#              pinned in role-pins.json in the key directory (copy it to every other host).
#
# What differs between hosts is read from the environment (defaults for the layout of
# deploy/README.md); commands run as the service run the way systemd runs the service:
#   MEDCHAT_HOME=/opt/medchat  MEDCHAT_ENV_FILE=/etc/medchat/medchat.env
#   MEDCHAT_OWNER_ENV_FILE=/etc/medchat/medchat-owner.env  MEDCHAT_BIN=$MEDCHAT_HOME/.venv/bin/medchat
#   MEDCHAT_SERVICE_USER=medchat  MEDCHAT_SERVICE_GROUP=medchat
#   MEDCHAT_DB_NAME=medchat  MEDCHAT_DB_OWNER=medchat_owner  MEDCHAT_DB_APP=medchat_app
#   MEDCHAT_DB_HOST=127.0.0.1  MEDCHAT_DB_PORT=5432  MEDCHAT_DB_OPTIONS=  (e.g. ?sslmode=verify-full)
#   MEDCHAT_PSQL="sudo -u postgres psql -X"               (a superuser's psql)
#   MEDCHAT_RUN_AS_SERVICE="systemd-run --pipe --wait --quiet --collect --uid=medchat
#       -p LimitCORE=0 -p WorkingDirectory=/opt/medchat -p EnvironmentFile=/etc/medchat/medchat.env"
#   MEDCHAT_RUN_AS_OWNER="$MEDCHAT_RUN_AS_SERVICE -p EnvironmentFile=/etc/medchat/medchat-owner.env"
set -euo pipefail

MEDCHAT_HOME=${MEDCHAT_HOME:-/opt/medchat}
ENV_FILE=${MEDCHAT_ENV_FILE:-/etc/medchat/medchat.env}
OWNER_ENV_FILE=${MEDCHAT_OWNER_ENV_FILE:-/etc/medchat/medchat-owner.env}
MEDCHAT=${MEDCHAT_BIN:-$MEDCHAT_HOME/.venv/bin/medchat}
SERVICE_USER=${MEDCHAT_SERVICE_USER:-medchat}
SERVICE_GROUP=${MEDCHAT_SERVICE_GROUP:-medchat}
DB_NAME=${MEDCHAT_DB_NAME:-medchat}
DB_OWNER=${MEDCHAT_DB_OWNER:-medchat_owner}
DB_APP=${MEDCHAT_DB_APP:-medchat_app}
DB_HOST=${MEDCHAT_DB_HOST:-127.0.0.1}
DB_PORT=${MEDCHAT_DB_PORT:-5432}
DB_OPTIONS=${MEDCHAT_DB_OPTIONS:-}
read -r -a PSQL <<<"${MEDCHAT_PSQL:-sudo -u postgres psql -X}"
read -r -a AS_SERVICE <<<"${MEDCHAT_RUN_AS_SERVICE:-systemd-run --pipe --wait --quiet --collect \
--uid=$SERVICE_USER -p LimitCORE=0 -p WorkingDirectory=$MEDCHAT_HOME -p EnvironmentFile=$ENV_FILE}"
read -r -a AS_OWNER <<<"${MEDCHAT_RUN_AS_OWNER:-${AS_SERVICE[*]} -p EnvironmentFile=$OWNER_ENV_FILE}"

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'bootstrap: %s\n' "$*" >&2; exit 1; }

for name in "$DB_NAME" "$DB_OWNER" "$DB_APP"; do
    [[ $name =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "not a plain PostgreSQL name: $name"
done

psql_in() {  # DATABASE ARGS...: the superuser's psql, stopping at the first error
    local database=$1
    shift
    "${PSQL[@]}" -v ON_ERROR_STOP=1 -q -d "$database" "$@"
}

env_value() {  # FILE NAME: the value of NAME= in an environment file (empty if unset)
    sed -n "s/^$2=//p" "$1" | tail -n 1
}

set_env() {  # FILE NAME VALUE: replace the NAME= line (or add it), keeping owner and mode
    local file=$1 name=$2 value=$3 next
    next=$(mktemp "$file.XXXXXX")
    if [[ -f $file ]]; then
        grep -v "^$name=" "$file" >"$next" || true
        chown --reference="$file" "$next"
        chmod --reference="$file" "$next"
    fi
    printf '%s=%s\n' "$name" "$value" >>"$next"
    mv "$next" "$file"
}

new_password() {  # 32 random hex digits: nothing to escape in a URL or in SQL
    od -An -tx1 -N16 /dev/urandom | tr -d ' \n'
}

roles_sql() {  # the grants of deploy/postgres-roles.sql, for this host's role names
    psql_in "$DB_NAME" -v owner="$DB_OWNER" -v app="$DB_APP" \
        -f "$MEDCHAT_HOME/deploy/postgres-roles.sql"
}

stage_database() {
    [[ -f $ENV_FILE ]] || die "$ENV_FILE is missing: copy deploy/systemd/medchat.env.example there"
    say "database $DB_NAME, roles $DB_OWNER (migrations) and $DB_APP (the service)"
    if [[ -z $(psql_in postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'") ]]; then
        psql_in postgres -c "CREATE DATABASE \"$DB_NAME\""
    fi
    roles_sql
    local owner_password app_password
    owner_password=$(new_password)
    app_password=$(new_password)
    # On standard input, never on a command line another user could read.
    printf 'ALTER ROLE "%s" PASSWORD '"'%s'"';\nALTER ROLE "%s" PASSWORD '"'%s'"';\n' \
        "$DB_OWNER" "$owner_password" "$DB_APP" "$app_password" | psql_in "$DB_NAME"
    local base="$DB_HOST:$DB_PORT/$DB_NAME$DB_OPTIONS"
    chgrp "$SERVICE_GROUP" "$ENV_FILE"
    chmod 0640 "$ENV_FILE"
    set_env "$ENV_FILE" MEDCHAT_DATABASE_URL "postgresql+psycopg://$DB_APP:$app_password@$base"
    (umask 077 && touch "$OWNER_ENV_FILE")
    chmod 0600 "$OWNER_ENV_FILE"
    set_env "$OWNER_ENV_FILE" MEDCHAT_DATABASE_URL "postgresql+psycopg://$DB_OWNER:$owner_password@$base"
    say "wrote MEDCHAT_DATABASE_URL ($DB_APP) to $ENV_FILE and ($DB_OWNER) to $OWNER_ENV_FILE"
}

stage_keys() {
    local key_dir
    key_dir=$(env_value "$ENV_FILE" MEDCHAT_KEY_DIR)
    [[ -n $key_dir ]] || die "MEDCHAT_KEY_DIR is not set in $ENV_FILE"
    say "server keys in $key_dir (owner $SERVICE_USER, directory 0700, files 0400)"
    install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_GROUP" "$key_dir"
    "${AS_SERVICE[@]}" "$MEDCHAT" keys server-init
    chmod 0400 "$key_dir"/*.key
    local public
    public=$("${AS_SERVICE[@]}" "$MEDCHAT" archive public-key |
        sed -n 's/^MEDCHAT_ARCHIVE_SIGNING_PUBLIC_KEY=//p')
    [[ $public =~ ^[0-9a-f]{64}$ ]] || die "medchat archive public-key printed no key"
    set_env "$ENV_FILE" MEDCHAT_ARCHIVE_SIGNING_PUBLIC_KEY "$public"
    say "pinned MEDCHAT_ARCHIVE_SIGNING_PUBLIC_KEY=$public in $ENV_FILE"
}

stage_migrate() {
    say "schema, as $DB_OWNER"
    "${AS_OWNER[@]}" "$MEDCHAT" db upgrade
    say "grants again: new tables for $DB_APP, append-only tables without UPDATE and DELETE"
    roles_sql
    "${AS_SERVICE[@]}" "$MEDCHAT" db current
}

stage_admin() {
    [[ $# -eq 3 ]] || die "usage: bootstrap.sh admin EMAIL FIRST_NAME LAST_NAME"
    say "first admin $1"
    "${AS_SERVICE[@]}" "$MEDCHAT" create-admin --email "$1" --first-name "$2" --last-name "$3"
}

stage_role_keys() {
    [[ $# -eq 2 ]] || die "usage: bootstrap.sh role-keys CLINICIAN_EMAIL OFFICER_EMAIL"
    say "role keys for $1 (physician) and $2 (archive)"
    "${AS_SERVICE[@]}" "$MEDCHAT" keys init --clinician "$1" --compliance "$2"
    "${AS_SERVICE[@]}" "$MEDCHAT" keys status
    say "copy role-pins.json from $(env_value "$ENV_FILE" MEDCHAT_KEY_DIR) to every other host"
}

stage=${1:-}
[[ $# -gt 0 ]] && shift
case $stage in
    database) stage_database "$@" ;;
    keys) stage_keys "$@" ;;
    migrate) stage_migrate "$@" ;;
    admin) stage_admin "$@" ;;
    role-keys) stage_role_keys "$@" ;;
    *) die "usage: bootstrap.sh database|keys|migrate|admin|role-keys (the sequence: see the file's head)" ;;
esac
