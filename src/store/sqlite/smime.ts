import type { Database as SqliteDatabase } from 'better-sqlite3';
import { NotFoundError } from '../store.js';
import { keyOf, PEER_COLUMNS, peerOf, SMIME_KEY_COLUMNS, type PeerCertificateRecord, type PeerRow, type SmimeKeyRecord, type SmimeKeyRow, type SmimeStore } from '../smime.js';
import { isForeignKeyViolation, prepareAll } from './util.js';

/** The accounts' S/MIME material in SQLite (see src/store/smime.ts). */
export class SqliteSmime implements SmimeStore {
  private readonly sql;

  constructor(private readonly db: SqliteDatabase) {
    this.sql = prepareAll(db, {
      get: `SELECT ${SMIME_KEY_COLUMNS} FROM smime_keys WHERE account_id = ?`,
      add: `INSERT INTO smime_keys (${SMIME_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id) DO NOTHING`,
      replace: 'UPDATE smime_keys SET cert_pem = ?, sealed_key = ?, issued = ?, updated = ? WHERE account_id = ? AND sealed_key = ?',
      reseal: 'UPDATE smime_keys SET sealed_key = ?, updated = ? WHERE account_id = ? AND sealed_key = ?',
      recert: 'UPDATE smime_keys SET cert_pem = ?, updated = ? WHERE account_id = ? AND sealed_key = ?',
      remove: 'DELETE FROM smime_keys WHERE account_id = ?',
      peer: `SELECT ${PEER_COLUMNS} FROM smime_peer_certificates WHERE account_id = ? AND address = ?`,
      peerCount: 'SELECT count(*) AS n FROM smime_peer_certificates WHERE account_id = ?',
      // The rules of src/store/smime.ts, in the write itself.
      peerPut: `INSERT INTO smime_peer_certificates (${PEER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (account_id, address) DO UPDATE SET cert_pem = excluded.cert_pem, not_after = excluded.not_after,
                  trusted = excluded.trusted, updated = excluded.updated
                WHERE (excluded.trusted = 1 AND (smime_peer_certificates.trusted = 0 OR smime_peer_certificates.not_after < excluded.not_after))
                   OR (excluded.trusted = 0 AND smime_peer_certificates.trusted = 0 AND smime_peer_certificates.not_after <= excluded.updated
                       AND smime_peer_certificates.not_after < excluded.not_after)`,
    });
  }

  async getKey(accountId: number): Promise<SmimeKeyRecord | undefined> {
    const row = this.sql.get.get(accountId) as SmimeKeyRow | undefined;
    return row ? keyOf(row) : undefined;
  }

  async putKey(r: SmimeKeyRecord, expected?: string): Promise<boolean> {
    try {
      if (expected === undefined) return this.sql.add.run(r.accountId, r.certPem, r.sealedKey, r.issued ? 1 : 0, r.updated).changes > 0;
      return this.sql.replace.run(r.certPem, r.sealedKey, r.issued ? 1 : 0, r.updated, r.accountId, expected).changes > 0;
    } catch (err) {
      if (isForeignKeyViolation(err)) throw new NotFoundError('account not found');
      throw err;
    }
  }

  async reseal(accountId: number, expected: string, sealedKey: string, updated: number): Promise<boolean> {
    return this.sql.reseal.run(sealedKey, updated, accountId, expected).changes > 0;
  }

  async replaceCertificate(accountId: number, expected: string, certPem: string, updated: number): Promise<boolean> {
    return this.sql.recert.run(certPem, updated, accountId, expected).changes > 0;
  }

  async deleteKey(accountId: number): Promise<boolean> {
    return this.sql.remove.run(accountId).changes > 0;
  }

  async putPeerCertificate(r: PeerCertificateRecord, limit: number): Promise<'stored' | 'kept' | 'full'> {
    return this.db
      .transaction((): 'stored' | 'kept' | 'full' => {
        const existing = this.sql.peer.get(r.accountId, r.address) as PeerRow | undefined;
        if (!existing && (this.sql.peerCount.get(r.accountId) as { n: number }).n >= limit) return 'full';
        try {
          return this.sql.peerPut.run(r.accountId, r.address, r.certPem, r.notAfter, r.trusted ? 1 : 0, r.updated).changes > 0 ? 'stored' : 'kept';
        } catch (err) {
          if (isForeignKeyViolation(err)) throw new NotFoundError('account not found');
          throw err;
        }
      })
      .immediate();
  }

  async getPeerCertificate(accountId: number, address: string): Promise<PeerCertificateRecord | undefined> {
    const row = this.sql.peer.get(accountId, address) as PeerRow | undefined;
    return row ? peerOf(row) : undefined;
  }
}
