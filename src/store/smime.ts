/**
 * The accounts' S/MIME material (spec section "Secure Messaging (S/MIME)"), on both engines:
 *
 * - `smime_keys`: one key pair per account: the certificate (PEM) and the private key
 *   *sealed* with the account's S/MIME password (src/services/smime/sealed-key.ts: PKCS#8
 *   encrypted with AES-256-GCM under an scrypt-derived key). The store never sees the key in
 *   clear. `issued` tells whether the server issued the certificate (SMIMESet mode=new), which
 *   is what mode=update may renew.
 * - `smime_peer_certificates`: certificates of other people, per account and address, collected
 *   from signed mail the account read (folderRead verifies the signature first, and only a
 *   certificate that names the From address is kept); messageSubmit encrypts for them. One per
 *   address, with whether it chained to a trusted root (`trusted`). Which one wins is decided in
 *   the write itself (no read-modify-write across nodes): a trusted one replaces an untrusted one
 *   or a trusted one that expires earlier; an untrusted one (self-signed, say) is kept only when
 *   the address has none, or the one it has is untrusted and expired by then — it never replaces
 *   a trusted one, nor a live untrusted one (anyone can make a self-signed certificate for any
 *   address).
 *
 * A key pair is set conditionally too: `putKey` without `expected` adds one only when the account
 * has none; with `expected` it replaces only the key sealed as `expected` (the one the caller
 * unlocked), so that two sessions racing cannot both win.
 *
 * A password change is conditional on the sealed key read before (`reseal`), so that two
 * sessions changing it at once cannot leave a key sealed with a password nobody typed last.
 */

export interface SmimeKeyRecord {
  accountId: number;
  certPem: string;
  sealedKey: string;
  issued: boolean;
  /** ms since the epoch. */
  updated: number;
}

export interface PeerCertificateRecord {
  accountId: number;
  /** Lower case. */
  address: string;
  certPem: string;
  /** The certificate's notAfter, ms since the epoch. */
  notAfter: number;
  /** It chained to a root the server trusts (when it was collected). */
  trusted: boolean;
  /** ms since the epoch: when it was collected (an untrusted one kept then expired is replaceable). */
  updated: number;
}

export interface SmimeStore {
  /** The account's key pair, if it has one. */
  getKey(accountId: number): Promise<SmimeKeyRecord | undefined>;
  /**
   * Sets the account's key pair: without `expected`, only when the account has none; with it,
   * only in place of the key whose sealed text is still `expected`. False when that condition
   * did not hold (nothing changed). NotFoundError when the account is gone.
   */
  putKey(record: SmimeKeyRecord, expected?: string): Promise<boolean>;
  /** Replaces the sealed key only when it is still `expected`; false otherwise (changed or removed meanwhile). */
  reseal(accountId: number, expected: string, sealedKey: string, updated: number): Promise<boolean>;
  /** Replaces the certificate only when the sealed key is still `expected` (a renewal of the same key). */
  replaceCertificate(accountId: number, expected: string, certPem: string, updated: number): Promise<boolean>;
  /** Removes the key pair; false when there was none. */
  deleteKey(accountId: number): Promise<boolean>;
  /**
   * Keeps `record` as the certificate of its address for the account, when the address has none,
   * or by the rules above: a trusted one replaces an untrusted one, or a trusted one expiring
   * earlier; an untrusted one replaces only an untrusted one expired at `record.updated`.
   * 'kept' when the stored one stays.
   * Adds at most `limit` addresses per account: 'full' when one more would pass it.
   * NotFoundError when the account is gone.
   */
  putPeerCertificate(record: PeerCertificateRecord, limit: number): Promise<'stored' | 'kept' | 'full'>;
  getPeerCertificate(accountId: number, address: string): Promise<PeerCertificateRecord | undefined>;
}

export const SMIME_KEY_COLUMNS = 'account_id, cert_pem, sealed_key, issued, updated';
export const PEER_COLUMNS = 'account_id, address, cert_pem, not_after, trusted, updated';

export interface SmimeKeyRow {
  account_id: number;
  cert_pem: string;
  sealed_key: string;
  issued: number | boolean;
  updated: number;
}

export interface PeerRow {
  account_id: number;
  address: string;
  cert_pem: string;
  not_after: number;
  trusted: number | boolean;
  updated: number;
}

export function keyOf(row: SmimeKeyRow): SmimeKeyRecord {
  return { accountId: Number(row.account_id), certPem: row.cert_pem, sealedKey: row.sealed_key, issued: row.issued === true || row.issued === 1, updated: Number(row.updated) };
}

export function peerOf(row: PeerRow): PeerCertificateRecord {
  return { accountId: Number(row.account_id), address: row.address, certPem: row.cert_pem, notAfter: Number(row.not_after), trusted: row.trusted === true || row.trusted === 1, updated: Number(row.updated) };
}
