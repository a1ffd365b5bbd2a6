#!/bin/bash
# make-secrets.sh: the secret files deploy/compose.yaml mounts (Compose secrets, at
# /run/secrets/<name> in the containers), with fresh random values. Run once, before
# `docker compose up`; existing files are kept (use --force to replace them all).
#
#   deploy/compose/make-secrets.sh [--force] [--mongo-uri URI]
#
# Written to deploy/secrets/ (not in git), mode 0640, group 10001 (the gid the adtrack
# services run as, deploy/Dockerfile): the services refuse secret files that every user can
# read (docs/SECURITY.md). Changing the group needs root; without it the script says what to
# run. Files:
#   click-key         HMAC key of click destinations (the collector)
#   admin-token       the admin API's token (coredata; the seed job; `adtrack --token-file`)
#   dashboard-token   the dashboard's sign-in token
#   read-token        coredata's read-only token: GET /v1/reports for the dashboard's history
#                     charts and `adtrack report --token-file`
#   redis-password    the password of Redis ACL user "adtrack"
#   redis-users.acl   Redis' ACL file: user "adtrack" (password as a SHA-256 hash, adtrack:*
#                     keys and channels only) and a default user that may only PING (the
#                     health check); mode 0644 because Redis runs as its own uid, and it holds
#                     no password
#   mongo-uri         the MongoDB URI (compose's own replica set; put Atlas credentials here)
set -euo pipefail
dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/secrets
force=0
mongo_uri="mongodb://mongo:27017/?replicaSet=rs0"
while [[ $# -gt 0 ]]; do
    case $1 in
    --force) force=1; shift ;;
    --mongo-uri) mongo_uri=${2:?}; shift 2 ;;
    *) echo "usage: $0 [--force] [--mongo-uri URI]" >&2; exit 2 ;;
    esac
done
mkdir -p "$dir"
chmod 0750 "$dir"
umask 027
put() { # put NAME VALUE [MODE]
    local f=$dir/$1
    if [[ -e $f && $force -eq 0 ]]; then
        echo "kept    $f"
        return
    fi
    printf '%s\n' "$2" > "$f.tmp"
    chmod "${3:-0640}" "$f.tmp"
    mv "$f.tmp" "$f"
    echo "written $f"
}
put click-key "$(openssl rand -hex 32)"
put admin-token "$(openssl rand -hex 24)"
put dashboard-token "$(openssl rand -hex 24)"
put read-token "$(openssl rand -hex 24)"
put redis-password "$(openssl rand -hex 24)"
hash=$(tr -d '\n' < "$dir/redis-password" | sha256sum | cut -d' ' -f1)
put redis-users.acl "user default on nopass -@all +ping
user adtrack on #$hash ~adtrack:* &adtrack:* +@all -@dangerous" 0644
put mongo-uri "$mongo_uri"
if chgrp 10001 "$dir" "$dir"/* 2> /dev/null; then
    echo "group 10001 set: the services (uid/gid 10001) can read them, other users cannot"
else
    echo "could not change the group (not root): run  sudo chgrp -R 10001 $dir" >&2
fi
