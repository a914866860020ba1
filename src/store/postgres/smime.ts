import { NotFoundError } from '../store.js';
import { keyOf, PEER_COLUMNS, peerOf, SMIME_KEY_COLUMNS, type PeerCertificateRecord, type PeerRow, type SmimeKeyRecord, type SmimeKeyRow, type SmimeStore } from '../smime.js';
import { isForeignKeyViolation, type Db, type Sql } from './db.js';

const SQL = {
  get: { name: 'smime.get', text: `SELECT ${SMIME_KEY_COLUMNS} FROM smime_keys WHERE account_id = $1` },
  add: { name: 'smime.add', text: `INSERT INTO smime_keys (${SMIME_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id) DO NOTHING` },
  replace: { name: 'smime.replace', text: 'UPDATE smime_keys SET cert_pem = $1, sealed_key = $2, issued = $3, updated = $4 WHERE account_id = $5 AND sealed_key = $6' },
  reseal: { name: 'smime.reseal', text: 'UPDATE smime_keys SET sealed_key = $1, updated = $2 WHERE account_id = $3 AND sealed_key = $4' },
  recert: { name: 'smime.recert', text: 'UPDATE smime_keys SET cert_pem = $1, updated = $2 WHERE account_id = $3 AND sealed_key = $4' },
  remove: { name: 'smime.remove', text: 'DELETE FROM smime_keys WHERE account_id = $1' },
  // Serializes the additions of one account's peer certificates on every node (the count, then the insert).
  lockAccount: { name: 'smime.lockAccount', text: 'SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE' },
  peer: { name: 'smime.peer', text: `SELECT ${PEER_COLUMNS} FROM smime_peer_certificates WHERE account_id = $1 AND address = $2` },
  peerCount: { name: 'smime.peerCount', text: 'SELECT count(*)::int AS n FROM smime_peer_certificates WHERE account_id = $1' },
  peerPut: {
    name: 'smime.peerPut',
    // The rules of src/store/smime.ts, in the write itself.
    text: `INSERT INTO smime_peer_certificates (${PEER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (account_id, address) DO UPDATE SET cert_pem = excluded.cert_pem, not_after = excluded.not_after,
             trusted = excluded.trusted, updated = excluded.updated
           WHERE (excluded.trusted AND (NOT smime_peer_certificates.trusted OR smime_peer_certificates.not_after < excluded.not_after))
              OR (NOT excluded.trusted AND NOT smime_peer_certificates.trusted AND smime_peer_certificates.not_after <= excluded.updated
                  AND smime_peer_certificates.not_after < excluded.not_after)`,
  },
} satisfies Record<string, Sql>;

/** The accounts' S/MIME material in PostgreSQL (see src/store/smime.ts). */
export class PgSmime implements SmimeStore {
  constructor(private readonly db: Db) {}

  async getKey(accountId: number): Promise<SmimeKeyRecord | undefined> {
    const row = await this.db.row<SmimeKeyRow>(SQL.get, [accountId]);
    return row ? keyOf(row) : undefined;
  }

  async putKey(r: SmimeKeyRecord, expected?: string): Promise<boolean> {
    try {
      if (expected === undefined) return (await this.db.run(SQL.add, [r.accountId, r.certPem, r.sealedKey, r.issued, r.updated])) > 0;
      return (await this.db.run(SQL.replace, [r.certPem, r.sealedKey, r.issued, r.updated, r.accountId, expected])) > 0;
    } catch (err) {
      if (isForeignKeyViolation(err)) throw new NotFoundError('account not found');
      throw err;
    }
  }

  async reseal(accountId: number, expected: string, sealedKey: string, updated: number): Promise<boolean> {
    return (await this.db.run(SQL.reseal, [sealedKey, updated, accountId, expected])) > 0;
  }

  async replaceCertificate(accountId: number, expected: string, certPem: string, updated: number): Promise<boolean> {
    return (await this.db.run(SQL.recert, [certPem, updated, accountId, expected])) > 0;
  }

  async deleteKey(accountId: number): Promise<boolean> {
    return (await this.db.run(SQL.remove, [accountId])) > 0;
  }

  async putPeerCertificate(r: PeerCertificateRecord, limit: number): Promise<'stored' | 'kept' | 'full'> {
    return this.db.tx(async (tx) => {
      const locked = await tx.row<{ id: number }>(SQL.lockAccount, [r.accountId]);
      if (!locked) throw new NotFoundError('account not found');
      const existing = await tx.row<PeerRow>(SQL.peer, [r.accountId, r.address]);
      if (!existing && (await tx.row<{ n: number }>(SQL.peerCount, [r.accountId]))!.n >= limit) return 'full';
      return (await tx.run(SQL.peerPut, [r.accountId, r.address, r.certPem, r.notAfter, r.trusted, r.updated])) > 0 ? 'stored' : 'kept';
    });
  }

  async getPeerCertificate(accountId: number, address: string): Promise<PeerCertificateRecord | undefined> {
    const row = await this.db.row<PeerRow>(SQL.peer, [accountId, address]);
    return row ? peerOf(row) : undefined;
  }
}
