// MongoDB roles for sessionpool-exporter. Run with mongosh as an administrator:
//   mongosh "mongodb://admin@db1:27017/admin" --file deploy/mongodb/roles.js
// Set POOLS_DB to the database holding the pools (one role pair per database).
const POOLS_DB = "pools";
const admin = db.getSiblingDB("admin");

// Statistics only: read the pools and list them. Enough for the exporter
// without --auto-release.
admin.createRole({
  role: "sessionpoolStats",
  privileges: [
    { resource: { db: POOLS_DB, collection: "" }, actions: ["find", "listCollections"] },
    // Only needed when the exporter runs without --database (it then lists databases).
    { resource: { cluster: true }, actions: ["listDatabases"] },
  ],
  roles: [],
});

// Auto-release writes: clearing expired locks updates session documents.
admin.createRole({
  role: "sessionpoolAutoRelease",
  privileges: [{ resource: { db: POOLS_DB, collection: "" }, actions: ["update"] }],
  roles: ["sessionpoolStats"],
});

// The exporter's user: pick one of the two roles.
admin.createUser({
  user: "sessionpool_stats",
  pwd: passwordPrompt(),
  roles: ["sessionpoolStats"], // or ["sessionpoolAutoRelease"] with --auto-release
});

// Workers (sessionlib) need to read and write their pools; ensure_indexes also
// needs createIndex. The built-in readWrite role on the pools database covers it:
//   admin.createUser({ user: "worker", pwd: passwordPrompt(), roles: [{ role: "readWrite", db: POOLS_DB }] });

// Encrypted pools (sessionlib.Encryption): the data keys live in the key
// vault. Workers of an encrypted pool read them; the operator who runs
// "sessionpool keys create/rotate" also writes them. The exporter's roles above
// grant nothing on KEY_VAULT_DB: it never reads a key, and needs none.
const KEY_VAULT_DB = "encryption";
const KEY_VAULT_COLLECTION = "__keyVault";
admin.createRole({
  role: "sessionpoolKeyReader",
  privileges: [
    { resource: { db: KEY_VAULT_DB, collection: KEY_VAULT_COLLECTION }, actions: ["find"] },
  ],
  roles: [],
});
admin.createRole({
  role: "sessionpoolKeyAdmin",
  privileges: [
    {
      resource: { db: KEY_VAULT_DB, collection: KEY_VAULT_COLLECTION },
      actions: ["find", "insert", "update", "createIndex"],
    },
  ],
  roles: [],
});
//   workers:  roles: [{ role: "readWrite", db: POOLS_DB }, "sessionpoolKeyReader"]
//   operator: roles: [{ role: "readWrite", db: POOLS_DB }, "sessionpoolKeyAdmin"]
