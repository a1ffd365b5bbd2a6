#!/bin/bash
# mongo-init.sh: makes the compose MongoDB a single-member replica set and waits until it is
# primary. Runs once (service mongo-init, in the mongo image, which has mongosh).
# Idempotent: an initiated set is left alone. A replica set, even of one member, is what
# majority write concern and the driver's retryable writes need (docs/MONGODB.md).
#
# Environment: MONGO_HOST (mongo:27017; also the member's address the services connect
# to, so it must resolve from them), MONGO_REPLSET (rs0; must match ?replicaSet= in the URI).
set -euo pipefail

host=${MONGO_HOST:-mongo:27017}
replset=${MONGO_REPLSET:-rs0}

for _ in $(seq 1 120); do
    if mongosh --quiet --host "$host" --eval 'db.adminCommand({ping: 1}).ok' > /dev/null 2>&1; then
        break
    fi
    sleep 1
done

mongosh --quiet --host "$host" --eval "
try {
  rs.status();
  print('mongo-init: replica set already initiated');
} catch (e) {
  if (e.codeName !== 'NotYetInitialized') { throw e; }
  rs.initiate({_id: '$replset', members: [{_id: 0, host: '$host'}]});
  print('mongo-init: replica set $replset initiated');
}
const deadline = Date.now() + 120000;
while (!db.hello().isWritablePrimary) {
  if (Date.now() > deadline) { throw new Error('no primary after 120 s'); }
  sleep(500);
}
print('mongo-init: primary ready');
"
