/**
 * Versioned schema migrations for the SQLite engine. Each entry runs once, in order, inside
 * a transaction; `PRAGMA user_version` records how far a store has come. Never edit a
 * migration that has shipped: add a new one.
 */
export const migrations: readonly string[] = [
  // 1: domains, accounts, alerts, server meta
  `
  CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );
  CREATE TABLE domains (
    name     TEXT PRIMARY KEY,
    settings TEXT NOT NULL DEFAULT '{}',
    created  INTEGER NOT NULL
  );
  CREATE TABLE accounts (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    domain              TEXT NOT NULL REFERENCES domains(name),
    name                TEXT NOT NULL,
    real_name           TEXT,
    password_hash       TEXT NOT NULL,
    cram_md5            TEXT,
    recovery_email      TEXT,
    settings            TEXT NOT NULL DEFAULT '{}',
    prefs               TEXT NOT NULL DEFAULT '{}',
    created             INTEGER NOT NULL,
    prev_login_time     INTEGER,
    prev_login_ip       TEXT,
    failed_login_time   INTEGER,
    failed_login_ip     TEXT,
    credentials_version INTEGER NOT NULL DEFAULT 1,
    UNIQUE (domain, name)
  );
  CREATE TABLE alerts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    posted     INTEGER NOT NULL,
    text       TEXT NOT NULL,
    confirmed  INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX alerts_pending ON alerts(account_id) WHERE confirmed = 0;
  `,
];
