/**
 * The accounts' S/MIME keys (spec "Secure Messaging (S/MIME)"), protocol-independent: making,
 * importing, unlocking, re-sealing and removing an account's key pair; the certificates mail is
 * encrypted for (a local recipient's own, or one collected from signed mail the sender read);
 * collecting signers' certificates; signing, encrypting and examining messages.
 *
 * The private key is stored sealed with the user's S/MIME password (sealed-key.ts) and is in
 * clear only in what `unlock` hands back, which the caller keeps for one session and drops.
 */
import type { Config } from '../../config.js';
import type { Logger } from '../../log.js';
import type { AccountRecord, Store } from '../../store/store.js';
import { NotFoundError } from '../../store/store.js';
import { ServiceError } from '../errors.js';
import type { MimePart } from '../mime/types.js';
import {
  certificateAddresses,
  certificateMatchesKey,
  certificateValidity,
  decryptEnveloped,
  encryptFor,
  issueIdentity,
  readPfx,
  signDetached,
  SmimeInputError,
  writePfx,
  type Identity,
} from './crypto.js';
import { removeHeaderFields } from '../mime/outgoing.js';
import { parseHeaderBlock, parseMime } from '../mime/parse.js';
import { decodePartBody } from '../mime/parts.js';
import { envelopedMessage, isEnveloped, signedMessage, splitMessage } from './mime.js';
import { examineMessage, READ_LIMITS, type SmimeFindings } from './read.js';
import { openKey, sealKey, WrongPasswordError } from './sealed-key.js';

/** An S/MIME password: some text, not a book. */
const MAX_PASSWORD = 1024;

function accountName(account: AccountRecord): string {
  return `${account.name}@${account.domain}`;
}

function checkPassword(password: string | undefined, what: string): string {
  if (password === undefined || password === '') throw new ServiceError(`the ${what} attribute is missing`);
  if (password.length > MAX_PASSWORD) throw new ServiceError(`the ${what} is too long (at most ${MAX_PASSWORD} characters)`);
  return password;
}

/** The window of smime.maxUnlockFailures. */
const FAILURE_WINDOW_MS = 10 * 60_000;

/** The shared-state scope of the wrong S/MIME passwords, per account id (every node counts in it). */
const UNLOCK_SCOPE = 'smime-unlock';

/** An account's unlock attempts as the shared state keeps them (JSON): wrong ones in the window, and those being checked. */
interface UnlockCounter {
  failures: number[];
  pending: number;
}

function unlockCounter(value: unknown, now: number): UnlockCounter {
  const v = (typeof value === 'object' && value !== null ? value : {}) as Partial<UnlockCounter>;
  const failures = Array.isArray(v.failures) ? v.failures.filter((t): t is number => typeof t === 'number' && now - t < FAILURE_WINDOW_MS) : [];
  return { failures, pending: typeof v.pending === 'number' && v.pending > 0 ? v.pending : 0 };
}

/** How long a counter matters: its last failure's window, or a reservation's (one a node that died held is forgotten then). */
function unlockExpiry(counter: UnlockCounter, now: number): number {
  const last = counter.failures.length > 0 ? counter.failures[counter.failures.length - 1]! : 0;
  return Math.max(last + FAILURE_WINDOW_MS, counter.pending > 0 ? now + FAILURE_WINDOW_MS : 0);
}

export class SmimeService {
  /** Password and PKCS#12 operations running, and those waiting for a turn. */
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly store: Store,
    private readonly config: Config['smime'],
    private readonly log: Logger,
  ) {}

  /**
   * Runs a heavy operation (scrypt: memory and CPU; key generation; PKCS#12 reading and writing,
   * synchronous in forge) when a turn is free: at most smime.passwordWorkers at once; past 8
   * times as many waiting, refused as busy. Synchronous work starts on a later turn of the event
   * loop, so that a queue of them lets other requests in between.
   */
  private async passwordWork<T>(work: () => T | Promise<T>): Promise<T> {
    if (this.running >= this.config.passwordWorkers) {
      if (this.waiting.length >= this.config.passwordWorkers * 8) {
        this.log.warn({ event: 'smime.busy', waiting: this.waiting.length }, 'S/MIME operation refused: too many waiting');
        throw new ServiceError('the server is busy with S/MIME operations; try again later');
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else this.running++;
    try {
      await new Promise<void>((resolve) => setImmediate(resolve));
      return await work();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }

  /**
   * Reserves one unlock attempt of the account in the shared state (every node sees it) before
   * the password is checked: refused when the wrong ones of the window and those being checked
   * reach smime.maxUnlockFailures, so that neither concurrent guesses nor other nodes pass it.
   */
  private async reserveUnlock(account: AccountRecord): Promise<void> {
    const limit = this.config.maxUnlockFailures;
    const now = Date.now();
    const reserved = await this.store.shared.update(UNLOCK_SCOPE, String(account.id), now, (value) => {
      const counter = unlockCounter(value, now);
      if (counter.failures.length + counter.pending >= limit) return { value, expires: unlockExpiry(counter, now), result: false };
      counter.pending++;
      return { value: counter, expires: unlockExpiry(counter, now), result: true };
    });
    if (!reserved) {
      this.log.warn({ event: 'smime.unlock_refused', account: accountName(account) }, `S/MIME unlock of ${accountName(account)} refused: too many wrong passwords`);
      throw new ServiceError('too many wrong S/MIME passwords; try again later');
    }
  }

  /** Settles a reservation: a wrong password counts; the right one gives it back and forgets the account's failures; an unchecked one gives it back. */
  private async settleUnlock(account: AccountRecord, outcome: 'wrong' | 'right' | 'unchecked'): Promise<void> {
    const now = Date.now();
    await this.store.shared.update(UNLOCK_SCOPE, String(account.id), now, (value) => {
      const counter = unlockCounter(value, now);
      counter.pending = Math.max(0, counter.pending - 1);
      if (outcome === 'wrong') counter.failures.push(now);
      else if (outcome === 'right') counter.failures = [];
      if (counter.failures.length === 0 && counter.pending === 0) return { value: undefined, expires: 0, result: undefined };
      return { value: counter, expires: unlockExpiry(counter, now), result: undefined };
    });
  }

  get limits(): Config['smime'] {
    return this.config;
  }

  /** The account's certificate (PEM), or undefined when it has no S/MIME key. */
  async certificate(account: AccountRecord): Promise<string | undefined> {
    return (await this.store.smime.getKey(account.id))?.certPem;
  }

  /**
   * The sealed key a new one may replace: undefined when the account has none; the stored one
   * when `unlocked` (the session's unlocked key) is it — the user proved the S/MIME password.
   * Otherwise refused: mail encrypted for the stored key would become unreadable.
   */
  private async replaceable(account: AccountRecord, unlocked: Identity | undefined): Promise<string | undefined> {
    const record = await this.store.smime.getKey(account.id);
    if (!record) return undefined;
    if (unlocked && certificateMatchesKey(record.certPem, unlocked.keyPem)) return record.sealedKey;
    this.log.warn({ event: 'smime.replace_refused', account: accountName(account) }, `S/MIME key of ${accountName(account)} not replaced: the current one is not unlocked`);
    throw new ServiceError('the account has an S/MIME key already: unlock it first (SMIMEUnlock) to replace it, or remove it (SMIMESet mode="delete")');
  }

  /**
   * SMIMESet mode=new: a new key pair and a certificate the server issues; the key unlocked.
   * An account with a key gets a new one only when `unlocked` is the current key.
   */
  async create(account: AccountRecord, password: string | undefined, unlocked?: Identity): Promise<Identity> {
    const pass = checkPassword(password, 'password');
    const expected = await this.replaceable(account, unlocked);
    const now = Date.now();
    // Key generation shares the password operations' turns: both are heavy.
    const identity = await this.passwordWork(() => issueIdentity(accountName(account), account.realName ?? undefined, this.config.keyBits, this.config.certificateDays, now));
    await this.put(account, identity, pass, true, now, expected);
    this.log.info({ event: 'smime.key_created', account: accountName(account) }, `S/MIME key and certificate made for ${accountName(account)}`);
    return identity;
  }

  /** SMIMESet mode=add: the key and certificate of a PKCS#12 file; the key unlocked. The same condition as `create`. */
  async importPfx(account: AccountRecord, pfx: Buffer, filePassword: string | undefined, password: string | undefined, unlocked?: Identity): Promise<Identity> {
    const pass = checkPassword(password, 'password');
    const expected = await this.replaceable(account, unlocked);
    const identity = await this.readPfx(account, pfx, filePassword);
    await this.put(account, identity, pass, false, Date.now(), expected);
    this.log.info({ event: 'smime.key_imported', account: accountName(account) }, `S/MIME key and certificate imported for ${accountName(account)}`);
    return identity;
  }

  /** SMIMESet mode=update: a new certificate for the same key, when the server issued the current one. */
  async renew(account: AccountRecord, unlocked: Identity): Promise<Identity> {
    const record = await this.store.smime.getKey(account.id);
    if (!record) throw new ServiceError('the account has no S/MIME key');
    if (!record.issued) throw new ServiceError('the S/MIME certificate was not issued by this server and cannot be updated here');
    const now = Date.now();
    const renewed = await issueIdentity(accountName(account), account.realName ?? undefined, this.config.keyBits, this.config.certificateDays, now, unlocked.keyPem);
    if (!(await this.store.smime.replaceCertificate(account.id, record.sealedKey, renewed.certPem, now))) {
      throw new ServiceError('the S/MIME key was changed meanwhile; unlock it again');
    }
    this.log.info({ event: 'smime.certificate_renewed', account: accountName(account) }, `S/MIME certificate of ${accountName(account)} renewed`);
    return renewed;
  }

  /** SMIMESet mode=delete: removes the key pair when the PKCS#12 file holds the same private key. */
  async remove(account: AccountRecord, pfx: Buffer, filePassword: string | undefined): Promise<void> {
    const given = await this.readPfx(account, pfx, filePassword);
    const record = await this.store.smime.getKey(account.id);
    if (!record) throw new ServiceError('the account has no S/MIME key');
    // The stored key is sealed: compare the public halves (the certificate's key) with the given key.
    if (!certificateMatchesKey(record.certPem, given.keyPem)) {
      this.log.warn({ event: 'smime.delete_refused', account: accountName(account) }, `S/MIME key of ${accountName(account)} not removed: another key given`);
      throw new ServiceError('the PFX private key is not the account\'s S/MIME key');
    }
    await this.store.smime.deleteKey(account.id);
    this.log.info({ event: 'smime.key_removed', account: accountName(account) }, `S/MIME key of ${accountName(account)} removed`);
  }

  /** SMIMEUnlock: the key pair in clear, for the caller's session only. */
  async unlock(account: AccountRecord, password: string | undefined): Promise<Identity> {
    const pass = checkPassword(password, 'password');
    const record = await this.store.smime.getKey(account.id);
    if (!record) throw new ServiceError('the account has no S/MIME key');
    await this.reserveUnlock(account);
    let keyPem: string;
    try {
      keyPem = await this.passwordWork(() => openKey(record.sealedKey, pass, account.id));
    } catch (err) {
      // A wrong password counts; anything else (busy, a damaged record) only gives the slot back.
      await this.settleUnlock(account, err instanceof WrongPasswordError ? 'wrong' : 'unchecked');
      if (err instanceof WrongPasswordError) {
        this.log.warn({ event: 'smime.unlock_failed', account: accountName(account) }, `wrong S/MIME password for ${accountName(account)}`);
        throw new ServiceError('wrong S/MIME password');
      }
      throw err;
    }
    await this.settleUnlock(account, 'right');
    return { keyPem, certPem: record.certPem };
  }

  /** SMIMEModifyPassword: the key sealed again with a new password (the unlocked key must be the stored one). */
  async changePassword(account: AccountRecord, unlocked: Identity, password: string | undefined): Promise<void> {
    const pass = checkPassword(password, 'password');
    const record = await this.store.smime.getKey(account.id);
    if (!record || !certificateMatchesKey(record.certPem, unlocked.keyPem)) throw new ServiceError('the S/MIME key was changed meanwhile; unlock it again');
    const sealed = await this.passwordWork(() => sealKey(unlocked.keyPem, pass, account.id));
    if (!(await this.store.smime.reseal(account.id, record.sealedKey, sealed, Date.now()))) {
      throw new ServiceError('the S/MIME key was changed meanwhile; unlock it again');
    }
    this.log.info({ event: 'smime.password_changed', account: accountName(account) }, `S/MIME password of ${accountName(account)} changed`);
  }

  /** The key pair as a PKCS#12 file encrypted with `password` (the export URL), in a turn of the heavy operations. */
  async exportPfx(account: AccountRecord, unlocked: Identity, password: string): Promise<Buffer> {
    const pfx = await this.passwordWork(() => writePfx(unlocked, password, accountName(account)));
    this.log.info({ event: 'smime.key_exported', account: accountName(account) }, `S/MIME key of ${accountName(account)} exported`);
    return pfx;
  }

  /** `raw` signed with the unlocked key (multipart/signed). */
  async sign(raw: Buffer, unlocked: Identity): Promise<Buffer> {
    this.checkSize(raw);
    return signedMessage(raw, (entity) => signDetached(entity, unlocked, Date.now()));
  }

  /**
   * `content` (a whole message, or a message whose entity alone is encrypted when `entityOnly`)
   * encrypted for the certificates, under the header fields of `headerSource`.
   */
  encrypt(headerSource: Buffer, content: Buffer, certificates: readonly string[], entityOnly: boolean): Buffer {
    this.checkSize(content);
    const data = entityOnly ? splitMessage(content).entity : content;
    try {
      return envelopedMessage(headerSource, encryptFor(data, [...new Set(certificates)]));
    } catch (err) {
      if (err instanceof SmimeInputError) throw new ServiceError(err.message);
      throw err;
    }
  }

  /**
   * The certificate to encrypt for `address`: the local account's own, else one `sender`
   * collected from signed mail; undefined when there is none (or it has expired). A collected
   * certificate that did not chain to a trusted root (self-signed, say) is used — the spec asks
   * trust of signatures, not of encryption, and mail clients encrypt for such certificates of
   * correspondents — but each use is logged (smime.untrusted_recipient), and such a certificate
   * is never kept in place of another (see collect).
   */
  async recipientCertificate(sender: AccountRecord, address: string, findAccount: (address: string) => Promise<AccountRecord | undefined>): Promise<string | undefined> {
    const now = Date.now();
    const local = await findAccount(address);
    if (local) {
      const own = await this.store.smime.getKey(local.id);
      if (own && certificateValidity(own.certPem).notAfter > now) return own.certPem;
    }
    const collected = await this.store.smime.getPeerCertificate(sender.id, address.toLowerCase());
    if (!collected || collected.notAfter <= now) return undefined;
    if (!collected.trusted) {
      this.log.warn({ event: 'smime.untrusted_recipient', account: accountName(sender), address }, `encrypting for ${address} with an untrusted (not CA-issued) S/MIME certificate collected by ${accountName(sender)}`);
    }
    return collected.certPem;
  }

  /**
   * A stored message encrypted with the account's own certificate (messageCopy encrypt="yes"):
   * its header fields kept, its body enveloped; undefined when it is encrypted already.
   */
  encryptStored(raw: Buffer, ownCertificate: string): Buffer | undefined {
    if (isEnveloped(parseMime(raw))) return undefined;
    return this.encrypt(raw, raw, [ownCertificate], true);
  }

  /**
   * A stored encrypted message decrypted (messageCopy decrypt="yes"): its header fields with the
   * decrypted entity (the decrypted message's own fields win over the outer ones of the same
   * name); undefined when it is not encrypted. A message that cannot be decrypted is a ServiceError.
   */
  decryptStored(raw: Buffer, unlocked: Identity): Buffer | undefined {
    const root = parseMime(raw);
    if (!isEnveloped(root)) return undefined;
    let content: Buffer;
    try {
      content = decryptEnveloped(decodePartBody(raw, root), unlocked).content;
    } catch (err) {
      if (err instanceof SmimeInputError) throw new ServiceError(err.message);
      throw err;
    }
    const inner = splitMessage(content);
    const own = new Set(parseHeaderBlock(content).fields.map((f) => f.name.toLowerCase()));
    const outer = splitMessage(removeHeaderFields(raw, own)).outer;
    return Buffer.concat([outer, inner.outer, Buffer.from('MIME-Version: 1.0\r\n', 'latin1'), inner.entity]);
  }

  /** Signed and encrypted parts of a stored message, examined for folderRead. */
  async examine(raw: Buffer, root: MimePart, unlocked: Identity | undefined): Promise<SmimeFindings> {
    return examineMessage(raw, root, unlocked, Date.now(), { ...READ_LIMITS, maxBytes: Math.max(this.config.maxMessageBytes, READ_LIMITS.maxBytes) });
  }

  /**
   * Keeps the certificates of the signers of a message the account read: only a signature that
   * verified over the signed data (a signer with its certificate), and only under an address of
   * `from` the certificate names (one for someone else is not kept under the From address); with
   * whether it chained to a trusted root, which decides what it may replace (src/store/smime.ts).
   */
  async collect(account: AccountRecord, findings: SmimeFindings, from: readonly string[]): Promise<void> {
    if (this.config.peerCertificates === 0) return;
    const wanted = new Set(from.map((a) => a.toLowerCase()));
    const own = accountName(account).toLowerCase();
    for (const finding of findings.values()) {
      if (finding.kind !== 'signed') continue;
      for (const signer of finding.signers) {
        if (!signer.signerPem) continue;
        const validity = certificateValidity(signer.signerPem);
        if (validity.notAfter <= Date.now()) continue;
        const trusted = signer.validationError === undefined;
        for (const address of certificateAddresses(signer.signerPem)) {
          if (!wanted.has(address) || address === own) continue;
          try {
            const outcome = await this.store.smime.putPeerCertificate(
              { accountId: account.id, address, certPem: signer.signerPem, notAfter: validity.notAfter, trusted, updated: Date.now() },
              this.config.peerCertificates,
            );
            if (outcome === 'stored') this.log.info({ event: 'smime.certificate_collected', account: accountName(account), address, trusted }, `S/MIME certificate of ${address} kept for ${accountName(account)}${trusted ? '' : ' (untrusted)'}`);
            if (outcome === 'kept' && !trusted) this.log.info({ event: 'smime.certificate_not_replaced', account: accountName(account), address }, `untrusted S/MIME certificate of ${address} not kept for ${accountName(account)}: one is kept already`);
            if (outcome === 'full') this.log.warn({ event: 'smime.certificates_full', account: accountName(account), address }, `S/MIME certificate of ${address} not kept: ${accountName(account)} keeps ${this.config.peerCertificates}`);
          } catch (err) {
            if (!(err instanceof NotFoundError)) throw err;
          }
        }
      }
    }
  }

  private checkSize(raw: Buffer): void {
    if (raw.length > this.config.maxMessageBytes) throw new ServiceError(`the message is too large to sign or encrypt (at most ${this.config.maxMessageBytes} bytes)`);
  }

  /** A PKCS#12 file read (forge, synchronous and heavy) in a turn of the heavy operations. */
  private async readPfx(account: AccountRecord, pfx: Buffer, filePassword: string | undefined): Promise<Identity> {
    if (filePassword === undefined) throw new ServiceError('the filePassword attribute is missing');
    if (pfx.length === 0) throw new ServiceError('the PFX data is empty');
    if (pfx.length > this.config.maxPfxBytes) throw new ServiceError(`the PFX data is too large (at most ${this.config.maxPfxBytes} bytes)`);
    try {
      return await this.passwordWork(() => readPfx(pfx, filePassword));
    } catch (err) {
      if (err instanceof SmimeInputError) {
        this.log.warn({ event: 'smime.pfx_refused', account: accountName(account), reason: err.message }, `PFX data refused for ${accountName(account)}: ${err.message}`);
        throw new ServiceError(err.message);
      }
      throw err;
    }
  }

  /** Stores the key sealed with `password`: added where none is (`expected` undefined), or in place of the sealed key `expected`. */
  private async put(account: AccountRecord, identity: Identity, password: string, issued: boolean, now: number, expected: string | undefined): Promise<void> {
    const sealedKey = await this.passwordWork(() => sealKey(identity.keyPem, password, account.id));
    let written: boolean;
    try {
      written = await this.store.smime.putKey({ accountId: account.id, certPem: identity.certPem, sealedKey, issued, updated: now }, expected);
    } catch (err) {
      if (err instanceof NotFoundError) throw new ServiceError('the account is gone');
      throw err;
    }
    if (!written) {
      this.log.warn({ event: 'smime.replace_refused', account: accountName(account) }, `S/MIME key of ${accountName(account)} not set: it was changed meanwhile`);
      throw new ServiceError('the S/MIME key was changed meanwhile (by another session); nothing was changed');
    }
    if (expected !== undefined) this.log.info({ event: 'smime.key_replaced', account: accountName(account) }, `S/MIME key of ${accountName(account)} replaced (the previous one was unlocked)`);
  }
}
