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
  // 2: mailboxes, messages (bodies shared by copies), the removal journal, subscriptions, aliases
  `
  CREATE TABLE mailboxes (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id      INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    class           TEXT NOT NULL DEFAULT '',
    pure_folder     INTEGER NOT NULL DEFAULT 0,
    uid_validity    INTEGER NOT NULL,
    uid_next        INTEGER NOT NULL DEFAULT 1,
    modseq          INTEGER NOT NULL DEFAULT 1,
    journal_horizon INTEGER NOT NULL DEFAULT 0,
    acl             TEXT NOT NULL DEFAULT '[]',
    -- Counters kept by the triggers on messages, so that lists and quota checks never scan.
    messages        INTEGER NOT NULL DEFAULT 0,
    size            INTEGER NOT NULL DEFAULT 0,
    unseen          INTEGER NOT NULL DEFAULT 0,
    media           INTEGER NOT NULL DEFAULT 0,
    unseen_media    INTEGER NOT NULL DEFAULT 0,
    UNIQUE (account_id, name)
  );
  CREATE TABLE message_bodies (
    id     INTEGER PRIMARY KEY,
    refs   INTEGER NOT NULL DEFAULT 0,
    header TEXT NOT NULL,
    data   BLOB NOT NULL
  );
  CREATE TABLE messages (
    mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid           INTEGER NOT NULL,
    orig_uid      INTEGER NOT NULL,
    modseq        INTEGER NOT NULL,
    flags         INTEGER NOT NULL,
    keywords      TEXT,
    internal_date INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    body_id       INTEGER NOT NULL,
    date          INTEGER,
    date_shift    INTEGER NOT NULL DEFAULT 0,
    from_         TEXT NOT NULL DEFAULT '',
    to_           TEXT NOT NULL DEFAULT '',
    cc            TEXT NOT NULL DEFAULT '',
    subject       TEXT NOT NULL DEFAULT '',
    priority      INTEGER NOT NULL DEFAULT 0,
    attrs         TEXT,
    PRIMARY KEY (mailbox_id, uid)
  ) WITHOUT ROWID;
  CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);
  CREATE INDEX messages_internal_date ON messages(mailbox_id, internal_date);
  -- Flag bits: 1 Seen, 64 Media (see services/mail/flags.ts).
  CREATE TRIGGER messages_added AFTER INSERT ON messages BEGIN
    UPDATE message_bodies SET refs = refs + 1 WHERE id = NEW.body_id;
    UPDATE mailboxes SET messages = messages + 1, size = size + NEW.size,
      unseen = unseen + ((NEW.flags & 1) = 0), media = media + ((NEW.flags & 64) != 0),
      unseen_media = unseen_media + ((NEW.flags & 65) = 64)
    WHERE id = NEW.mailbox_id;
  END;
  CREATE TRIGGER messages_removed AFTER DELETE ON messages BEGIN
    UPDATE message_bodies SET refs = refs - 1 WHERE id = OLD.body_id;
    DELETE FROM message_bodies WHERE id = OLD.body_id AND refs <= 0;
    UPDATE mailboxes SET messages = messages - 1, size = size - OLD.size,
      unseen = unseen - ((OLD.flags & 1) = 0), media = media - ((OLD.flags & 64) != 0),
      unseen_media = unseen_media - ((OLD.flags & 65) = 64)
    WHERE id = OLD.mailbox_id;
  END;
  CREATE TRIGGER messages_flagged AFTER UPDATE OF flags ON messages WHEN (OLD.flags & 65) != (NEW.flags & 65) BEGIN
    UPDATE mailboxes SET
      unseen = unseen + ((NEW.flags & 1) = 0) - ((OLD.flags & 1) = 0),
      media = media + ((NEW.flags & 64) != 0) - ((OLD.flags & 64) != 0),
      unseen_media = unseen_media + ((NEW.flags & 65) = 64) - ((OLD.flags & 65) = 64)
    WHERE id = NEW.mailbox_id;
  END;
  CREATE TABLE expunged (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    modseq     INTEGER NOT NULL,
    uid        INTEGER NOT NULL,
    orig_uid   INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, modseq, uid)
  ) WITHOUT ROWID;
  CREATE TABLE subscriptions (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
  ) WITHOUT ROWID;
  CREATE TABLE mailbox_aliases (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    target     TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
  ) WITHOUT ROWID;
  `,
  // 3: datasets (src/store/sqlite/datasets.ts). A dataset's parents always have rows of
  // their own; entries go with their dataset (and datasets with their account). `attrs` is a
  // JSON object of strings; `email_key` is the lower-cased `email` attribute (emailKey() in
  // src/store/datasets.ts), indexed for address lookups (Mail Rules' `in #Dataset`).
  `
  CREATE TABLE datasets (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    path       TEXT NOT NULL,
    PRIMARY KEY (account_id, path)
  ) WITHOUT ROWID;
  CREATE TABLE dataset_entries (
    account_id INTEGER NOT NULL,
    path       TEXT NOT NULL,
    name       TEXT NOT NULL,
    attrs      TEXT NOT NULL,
    email_key  TEXT,
    PRIMARY KEY (account_id, path, name),
    FOREIGN KEY (account_id, path) REFERENCES datasets(account_id, path) ON DELETE CASCADE
  ) WITHOUT ROWID;
  CREATE INDEX dataset_entries_email ON dataset_entries(account_id, path, email_key) WHERE email_key IS NOT NULL;
  `,
  // 4: Automated Rules and the vacation-reply log (src/store/sqlite/rules.ts)
  `
  CREATE TABLE rules (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    type       TEXT NOT NULL,
    name       TEXT NOT NULL,
    priority   INTEGER NOT NULL,
    stage      TEXT,
    -- JSON: {"conditions": [{opCode, operator, parameter}], "actions": [{opCode, parameter}], "comment"}
    body       TEXT NOT NULL,
    PRIMARY KEY (account_id, type, name)
  ) WITHOUT ROWID;
  CREATE TABLE vacation_replies (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    rule       TEXT NOT NULL,
    address    TEXT NOT NULL,
    sent       INTEGER NOT NULL,
    -- The delivery key of the delivery that replied (a re-run of it may reply again).
    key        TEXT,
    PRIMARY KEY (account_id, rule, address)
  ) WITHOUT ROWID;
  `,
  // 5: the outbound queue, delivery keys, password-reset tokens (src/store/sqlite/queue.ts)
  `
  CREATE TABLE queue_messages (
    id        INTEGER PRIMARY KEY,
    sender    TEXT NOT NULL,
    raw       BLOB NOT NULL,
    created   INTEGER NOT NULL,
    expires   INTEGER NOT NULL,
    ret       TEXT,
    envid     TEXT,
    source    TEXT NOT NULL,
    submitter INTEGER,
    key       TEXT UNIQUE
  );
  CREATE TABLE queue_recipients (
    message_id   INTEGER NOT NULL REFERENCES queue_messages(id) ON DELETE CASCADE,
    address      TEXT NOT NULL,
    notify       TEXT,
    orcpt        TEXT,
    state        TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL,
    last_attempt INTEGER,
    status       TEXT,
    diagnostic   TEXT,
    remote_mta   TEXT,
    PRIMARY KEY (message_id, address)
  ) WITHOUT ROWID;
  CREATE INDEX queue_due ON queue_recipients(state, next_attempt);
  CREATE TABLE delivery_keys (
    key     TEXT PRIMARY KEY,
    created INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX delivery_keys_created ON delivery_keys(created);
  CREATE TABLE password_resets (
    token_hash TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    expires    INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  // 6: account aliases (other names of an account in its domain: mail and logins)
  `
  CREATE TABLE account_aliases (
    domain     TEXT NOT NULL,
    name       TEXT NOT NULL,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    PRIMARY KEY (domain, name)
  ) WITHOUT ROWID;
  CREATE INDEX account_aliases_account ON account_aliases(account_id);
  `,
  // 7: queue leases (src/store/sqlite/queue.ts): the process working on a message, and until
  // when; both null when nobody is. The index finds the few leased messages (nextDue).
  `
  ALTER TABLE queue_messages ADD COLUMN lease_owner TEXT;
  ALTER TABLE queue_messages ADD COLUMN lease_until INTEGER;
  CREATE INDEX queue_leases ON queue_messages(lease_until) WHERE lease_until IS NOT NULL;
  `,
  // 8: the processes serving the store and their XIMSS sessions (src/store/sqlite/cluster.ts).
  // A session's node is not a foreign key: removeNode deletes its sessions itself, and a
  // session of a node not (or no longer) registered counts as on a dead node.
  `
  CREATE TABLE nodes (
    id          TEXT PRIMARY KEY,
    http_url    TEXT NOT NULL,
    alive_until INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE TABLE sessions (
    url_id     TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL,
    node       TEXT NOT NULL,
    created    INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX sessions_account ON sessions(account_id, created);
  CREATE INDEX sessions_node ON sessions(node);
  `,
  // 9: small values shared by the processes (login-failure counters): JSON by scope and key
  `
  CREATE TABLE shared_state (
    scope   TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
  ) WITHOUT ROWID;
  CREATE INDEX shared_state_expires ON shared_state(expires);
  `,
  // 10: the change relay (src/store/sqlite/relay.ts): what the command line tells the server.
  // AUTOINCREMENT: ids never go back when every row has been pruned, so a listener's cursor
  // (the last id it read) never skips a new message.
  `
  CREATE TABLE relay_messages (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    origin  TEXT NOT NULL,
    message TEXT NOT NULL,
    created INTEGER NOT NULL
  );
  `,
  // 11: queue ids are never reused (AUTOINCREMENT: an INTEGER PRIMARY KEY alone hands the
  // highest id out again once its message is gone, and ids name messages in logs, reports'
  // delivery keys and the administrator's commands). The tables are rebuilt: new ones are
  // filled, the old child then parent dropped (dropping a parent first would cascade), and
  // the new ones renamed (which carries the recipients' foreign key along).
  `
  CREATE TABLE queue_messages_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sender      TEXT NOT NULL,
    raw         BLOB NOT NULL,
    created     INTEGER NOT NULL,
    expires     INTEGER NOT NULL,
    ret         TEXT,
    envid       TEXT,
    source      TEXT NOT NULL,
    submitter   INTEGER,
    key         TEXT UNIQUE,
    lease_owner TEXT,
    lease_until INTEGER
  );
  INSERT INTO queue_messages_new (id, sender, raw, created, expires, ret, envid, source, submitter, key, lease_owner, lease_until)
    SELECT id, sender, raw, created, expires, ret, envid, source, submitter, key, lease_owner, lease_until FROM queue_messages;
  CREATE TABLE queue_recipients_new (
    message_id   INTEGER NOT NULL REFERENCES queue_messages_new(id) ON DELETE CASCADE,
    address      TEXT NOT NULL,
    notify       TEXT,
    orcpt        TEXT,
    state        TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL,
    last_attempt INTEGER,
    status       TEXT,
    diagnostic   TEXT,
    remote_mta   TEXT,
    PRIMARY KEY (message_id, address)
  ) WITHOUT ROWID;
  INSERT INTO queue_recipients_new SELECT message_id, address, notify, orcpt, state, attempts, next_attempt, last_attempt, status, diagnostic, remote_mta
    FROM queue_recipients;
  DROP TABLE queue_recipients;
  DROP TABLE queue_messages;
  ALTER TABLE queue_messages_new RENAME TO queue_messages;
  ALTER TABLE queue_recipients_new RENAME TO queue_recipients;
  CREATE INDEX queue_due ON queue_recipients(state, next_attempt);
  CREATE INDEX queue_leases ON queue_messages(lease_until) WHERE lease_until IS NOT NULL;
  `,
  // 12: an account's Public Info (prefsRead/prefsStore type="publicInfo", the directory).
  `ALTER TABLE accounts ADD COLUMN public_info TEXT NOT NULL DEFAULT '{}';`,
  // 13: the File Storage (src/store/files.ts): entries, content in chunk rows of staging or
  // live blobs, locks every process sees, subscriptions.
  `
  CREATE TABLE file_blobs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    staged_at  INTEGER
  );
  CREATE INDEX file_blobs_staged ON file_blobs(staged_at) WHERE staged_at IS NOT NULL;
  CREATE TABLE file_chunks (
    blob_id INTEGER NOT NULL REFERENCES file_blobs(id) ON DELETE CASCADE,
    offset  INTEGER NOT NULL,
    data    BLOB NOT NULL,
    PRIMARY KEY (blob_id, offset)
  ) WITHOUT ROWID;
  CREATE TABLE files (
    account_id     INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    path           TEXT NOT NULL,
    parent         TEXT NOT NULL,
    kind           TEXT NOT NULL,
    size           INTEGER NOT NULL DEFAULT 0,
    created        INTEGER NOT NULL,
    modified       INTEGER NOT NULL,
    attrs_modified INTEGER NOT NULL,
    etag           TEXT NOT NULL,
    attributes     TEXT NOT NULL DEFAULT '[]',
    blob_id        INTEGER,
    PRIMARY KEY (account_id, path)
  );
  CREATE INDEX files_parent ON files(account_id, parent, path);
  CREATE TABLE file_locks (
    token      TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    path       TEXT NOT NULL,
    scope      TEXT NOT NULL,
    type       TEXT NOT NULL,
    depth      TEXT NOT NULL,
    owner_xml  TEXT NOT NULL,
    locked_by  INTEGER NOT NULL,
    expires    INTEGER NOT NULL
  );
  CREATE INDEX file_locks_account ON file_locks(account_id, path);
  CREATE TABLE file_subscriptions (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
  ) WITHOUT ROWID;
  `,
  // 14: account Access Control Lists (accountACLList/accountACLUpdate, src/store/sqlite/account-acl.ts).
  `
  CREATE TABLE account_acl (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    pattern    TEXT NOT NULL,
    rights     TEXT NOT NULL,
    PRIMARY KEY (account_id, pattern)
  ) WITHOUT ROWID;
  `,
  // 15: File Storage content rows in an ordinary (rowid) table: SQLite keeps WITHOUT ROWID rows
  // in an index b-tree whose overflow chains make 256 KB rows several times slower to read.
  `
  CREATE TABLE file_chunks_new (
    blob_id INTEGER NOT NULL REFERENCES file_blobs(id) ON DELETE CASCADE,
    offset  INTEGER NOT NULL,
    data    BLOB NOT NULL,
    UNIQUE (blob_id, offset)
  );
  INSERT INTO file_chunks_new (blob_id, offset, data) SELECT blob_id, offset, data FROM file_chunks;
  DROP TABLE file_chunks;
  ALTER TABLE file_chunks_new RENAME TO file_chunks;
  `,
  // 16: CardDAV resource names by (mailbox, ORIGUID) (src/store/sqlite/dav-names.ts).
  `
  CREATE TABLE dav_names (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    orig_uid   INTEGER NOT NULL,
    name       TEXT NOT NULL,
    PRIMARY KEY (mailbox_id, orig_uid)
  ) WITHOUT ROWID;
  `,
  // 17: the calendar index, a row per message of a calendar (src/store/calendar-index.ts).
  `
  CREATE TABLE calendar_index (
    mailbox_id  INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    item_uid    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    first_start INTEGER,
    last_end    INTEGER,
    alarm_first INTEGER,
    alarm_last  INTEGER,
    PRIMARY KEY (mailbox_id, uid),
    FOREIGN KEY (mailbox_id, uid) REFERENCES messages(mailbox_id, uid) ON DELETE CASCADE
  ) WITHOUT ROWID;
  CREATE INDEX calendar_index_start ON calendar_index(mailbox_id, kind, first_start);
  CREATE INDEX calendar_index_item ON calendar_index(mailbox_id, item_uid);
  `,
  // 18: real-time messaging (src/store/im.ts, src/store/sqlite/im.ts): SCRAM verifiers of the
  // accounts; rosters (items, a version per account, groups created by name); messages kept
  // for offline users; the message archive (seq orders messages of equal stamps, so a page
  // boundary is stable); block lists; the connected clients of every node (a resource's node
  // is not a foreign key, as for sessions: a resource of a node not alive does not count);
  // multi-user chat rooms with their affiliations and discussion history.
  `
  ALTER TABLE accounts ADD COLUMN scram_credentials TEXT;
  CREATE TABLE roster_items (
    account_id   INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    jid          TEXT NOT NULL,
    name         TEXT NOT NULL,
    subscription TEXT NOT NULL,
    ask          INTEGER NOT NULL,
    approved     INTEGER NOT NULL,
    pending_in   TEXT,
    groups       TEXT NOT NULL,
    PRIMARY KEY (account_id, jid)
  ) WITHOUT ROWID;
  CREATE TABLE roster_versions (
    account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    version    INTEGER NOT NULL
  );
  CREATE TABLE roster_groups (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
  ) WITHOUT ROWID;
  CREATE TABLE offline_messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    stamp      INTEGER NOT NULL,
    sender     TEXT NOT NULL,
    xml        TEXT NOT NULL
  );
  CREATE INDEX offline_messages_account ON offline_messages(account_id, id);
  CREATE INDEX offline_messages_stamp ON offline_messages(stamp);
  CREATE TABLE archive_messages (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    archive_id TEXT NOT NULL,
    stamp      INTEGER NOT NULL,
    with_jid   TEXT NOT NULL,
    outgoing   INTEGER NOT NULL,
    xml        TEXT NOT NULL,
    UNIQUE (account_id, archive_id)
  );
  CREATE INDEX archive_messages_time ON archive_messages(account_id, stamp, seq);
  CREATE INDEX archive_messages_with ON archive_messages(account_id, with_jid, stamp, seq);
  CREATE INDEX archive_messages_stamp ON archive_messages(stamp);
  CREATE TABLE blocked_jids (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    jid        TEXT NOT NULL,
    PRIMARY KEY (account_id, jid)
  ) WITHOUT ROWID;
  CREATE TABLE im_resources (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    resource   TEXT NOT NULL,
    node       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    available  INTEGER NOT NULL,
    priority   INTEGER NOT NULL,
    presence   TEXT NOT NULL,
    since      INTEGER NOT NULL,
    PRIMARY KEY (account_id, resource)
  ) WITHOUT ROWID;
  CREATE INDEX im_resources_node ON im_resources(node);
  CREATE TABLE muc_rooms (
    jid     TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    config  TEXT NOT NULL,
    subject TEXT NOT NULL,
    created INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX muc_rooms_service ON muc_rooms(service, jid);
  CREATE TABLE muc_affiliations (
    room        TEXT NOT NULL REFERENCES muc_rooms(jid) ON DELETE CASCADE,
    user_jid    TEXT NOT NULL,
    affiliation TEXT NOT NULL,
    PRIMARY KEY (room, user_jid)
  ) WITHOUT ROWID;
  CREATE TABLE muc_history (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    room  TEXT NOT NULL REFERENCES muc_rooms(jid) ON DELETE CASCADE,
    stamp INTEGER NOT NULL,
    nick  TEXT NOT NULL,
    xml   TEXT NOT NULL
  );
  CREATE INDEX muc_history_room ON muc_history(room, seq);
  `,
  // 19: HTTP Digest credentials of the accounts (HA1 for MD5 and SHA-256, for SIP; see
  // services/passwords.ts digestCredentials), null until made at a password change or login.
  `
  ALTER TABLE accounts ADD COLUMN digest_credentials TEXT;
  `,
  // 20: SIP registrations (src/store/registrations.ts): one row per binding of an account's
  // address-of-record, with the flow and node that reach the device back.
  `
  CREATE TABLE sip_bindings (
    account_id     INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    binding_key    TEXT NOT NULL,
    contact        TEXT NOT NULL,
    contact_params TEXT NOT NULL,
    instance       TEXT,
    reg_id         INTEGER,
    call_id        TEXT NOT NULL,
    cseq           INTEGER NOT NULL,
    expires        INTEGER NOT NULL,
    q              INTEGER,
    transport      TEXT NOT NULL,
    host           TEXT NOT NULL,
    port           INTEGER NOT NULL,
    flow           TEXT,
    node           TEXT NOT NULL,
    outbound       INTEGER NOT NULL,
    path           TEXT NOT NULL,
    user_agent     TEXT NOT NULL,
    updated        INTEGER NOT NULL,
    PRIMARY KEY (account_id, binding_key)
  );
  CREATE INDEX sip_bindings_expires ON sip_bindings(expires);
  CREATE INDEX sip_bindings_node ON sip_bindings(node);
  `,
  // 21: meetings of the real-time applications (src/store/meetings.ts): named rendezvous points
  // of an account's meeting sets, each with the task (and its node) that activated it, if any.
  `
  CREATE TABLE meetings (
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    set_name    TEXT NOT NULL,
    name        TEXT NOT NULL,
    parameter   TEXT,
    task_handle TEXT,
    task_node   TEXT,
    expires     INTEGER NOT NULL,
    created     INTEGER NOT NULL,
    PRIMARY KEY (account_id, set_name, name)
  ) WITHOUT ROWID;
  CREATE INDEX meetings_expires ON meetings(expires);
  CREATE INDEX meetings_task_node ON meetings(task_node) WHERE task_node IS NOT NULL;
  CREATE INDEX meetings_task_handle ON meetings(task_handle) WHERE task_handle IS NOT NULL;
  `,
  // 22: account balances as a ledger (src/store/billing.ts): signed amounts in minor units per
  // currency, each balance the sum of its entries; an optional idempotency key, unique per account.
  `
  CREATE TABLE ledger (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    currency   TEXT NOT NULL,
    amount     INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    actor      TEXT NOT NULL,
    time       INTEGER NOT NULL,
    idem_key   TEXT,
    UNIQUE (account_id, idem_key)
  );
  CREATE INDEX ledger_account_currency ON ledger(account_id, currency, id);
  `,
  // 23: remote SIP registrations of the accounts (src/store/remote-sip.ts): the settings (the
  // password sealed), the Contact user part that identifies the record, the lease of the node
  // that registers it, and the state of the registration.
  `
  CREATE TABLE remote_sip (
    account_id       INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    domain           TEXT NOT NULL,
    proxy            TEXT NOT NULL,
    user_name        TEXT NOT NULL,
    auth_name        TEXT NOT NULL,
    password         TEXT NOT NULL,
    expires          INTEGER NOT NULL,
    enabled          INTEGER NOT NULL,
    contact_user     TEXT NOT NULL UNIQUE,
    version          INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until      INTEGER,
    registered_until INTEGER,
    last_attempt     INTEGER,
    last_error       TEXT,
    PRIMARY KEY (account_id, name)
  );
  CREATE INDEX remote_sip_lease ON remote_sip(lease_owner);
  `,
  // 24: the accounts' S/MIME material (src/store/smime.ts): the certificate and the private key
  // sealed with the S/MIME password, and certificates collected from signed mail, per address.
  `
  CREATE TABLE smime_keys (
    account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    cert_pem   TEXT NOT NULL,
    sealed_key TEXT NOT NULL,
    issued     INTEGER NOT NULL,
    updated    INTEGER NOT NULL
  );
  CREATE TABLE smime_peer_certificates (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    address    TEXT NOT NULL,
    cert_pem   TEXT NOT NULL,
    not_after  INTEGER NOT NULL,
    updated    INTEGER NOT NULL,
    PRIMARY KEY (account_id, address)
  );
  `,
  // 25: remote POP and IMAP accounts (src/store/remote-mail.ts): an account's records of mailboxes on
  // other servers, their polling lease and fetch state (IMAP's UIDVALIDITY and last UID here, the
  // UIDLs of POP3 messages already fetched in remote_mail_seen).
  `
  CREATE TABLE remote_mail (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id       INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind             TEXT NOT NULL,
    name             TEXT NOT NULL,
    host             TEXT NOT NULL,
    port             INTEGER NOT NULL,
    tls              TEXT NOT NULL,
    user_name        TEXT NOT NULL,
    password         TEXT NOT NULL,
    leave            INTEGER NOT NULL,
    interval_seconds INTEGER NOT NULL,
    mailbox          TEXT NOT NULL,
    next_poll        INTEGER NOT NULL,
    last_poll        INTEGER,
    last_error       TEXT,
    failures         INTEGER NOT NULL DEFAULT 0,
    uid_validity     INTEGER,
    last_uid         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_until      INTEGER,
    UNIQUE (account_id, kind, name)
  );
  CREATE INDEX remote_mail_next_poll ON remote_mail(next_poll);
  CREATE TABLE remote_mail_seen (
    record_id INTEGER NOT NULL REFERENCES remote_mail(id) ON DELETE CASCADE,
    uidl      TEXT NOT NULL,
    time      INTEGER NOT NULL,
    PRIMARY KEY (record_id, uidl)
  ) WITHOUT ROWID;
  `,
  // 26: login security (src/store/login-security.ts): the TOTP secret (sealed) with the last
  // time step taken, recovery codes as hashes (each used once), and application passwords.
  `
  CREATE TABLE two_factor (
    account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    secret     TEXT NOT NULL,
    enabled    INTEGER NOT NULL,
    last_step  INTEGER NOT NULL
  );
  CREATE TABLE recovery_codes (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    hash       TEXT NOT NULL,
    used       INTEGER,
    PRIMARY KEY (account_id, hash)
  ) WITHOUT ROWID;
  CREATE TABLE app_passwords (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL,
    scram      TEXT,
    digest     TEXT,
    created    INTEGER NOT NULL,
    last_used  INTEGER,
    PRIMARY KEY (account_id, name)
  ) WITHOUT ROWID;
  `,
  // 27: S/MIME peer certificates record whether they chained to a trusted root (src/store/smime.ts);
  // those collected before (kept even when unverified, replaceable by anyone) are dropped, to be
  // collected again from signed mail under the new rules.
  `
  DELETE FROM smime_peer_certificates;
  ALTER TABLE smime_peer_certificates ADD COLUMN trusted INTEGER NOT NULL DEFAULT 0;
  `,
  // 28: remote mail recovery (src/store/remote-mail.ts): IMAP UIDs left on the server (too large) and a
  // standing note of the record; the misses of a fetched POP3 UIDL absent from listings (pruned late).
  `
  ALTER TABLE remote_mail ADD COLUMN skipped TEXT;
  ALTER TABLE remote_mail ADD COLUMN note TEXT;
  ALTER TABLE remote_mail_seen ADD COLUMN misses INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE remote_mail_seen ADD COLUMN missing_since INTEGER;
  `,
];
