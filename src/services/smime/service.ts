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

export class SmimeService {
  /** Wrong passwords per account id in the current window (this node). */
  private readonly failures = new Map<number, { count: number; since: number }>();
  /** Password operations running, and those waiting for a turn. */
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly store: Store,
    private readonly config: Config['smime'],
    private readonly log: Logger,
  ) {}

  /**
   * Runs a password operation (scrypt: memory and CPU) when a turn is free: at most
   * smime.passwordWorkers at once; past 8 times as many waiting, refused as busy.
   */
  private async passwordWork<T>(work: () => Promise<T>): Promise<T> {
    if (this.running >= this.config.passwordWorkers) {
      if (this.waiting.length >= this.config.passwordWorkers * 8) throw new ServiceError('the server is busy with S/MIME passwords; try again later');
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else this.running++;
    try {
      return await work();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }

  private checkFailures(account: AccountRecord): void {
    const entry = this.failures.get(account.id);
    if (!entry) return;
    if (Date.now() - entry.since > FAILURE_WINDOW_MS) {
      this.failures.delete(account.id);
      return;
    }
    if (entry.count >= this.config.maxUnlockFailures) throw new ServiceError('too many wrong S/MIME passwords; try again later');
  }

  private recordFailure(account: AccountRecord): void {
    const now = Date.now();
    const entry = this.failures.get(account.id);
    if (!entry || now - entry.since > FAILURE_WINDOW_MS) this.failures.set(account.id, { count: 1, since: now });
    else entry.count++;
    // Forget stale entries now and then, so that the map stays as small as the attacks are recent.
    if (this.failures.size > 10_000) for (const [id, e] of this.failures) if (now - e.since > FAILURE_WINDOW_MS) this.failures.delete(id);
  }

  get limits(): Config['smime'] {
    return this.config;
  }

  /** The account's certificate (PEM), or undefined when it has no S/MIME key. */
  async certificate(account: AccountRecord): Promise<string | undefined> {
    return (await this.store.smime.getKey(account.id))?.certPem;
  }

  /** SMIMESet mode=new: a new key pair and a certificate the server issues; the key unlocked. */
  async create(account: AccountRecord, password: string | undefined): Promise<Identity> {
    const pass = checkPassword(password, 'password');
    const now = Date.now();
    // Key generation shares the password operations' turns: both are heavy.
    const identity = await this.passwordWork(() => issueIdentity(accountName(account), account.realName ?? undefined, this.config.keyBits, this.config.certificateDays, now));
    await this.put(account, identity, pass, true, now);
    this.log.info({ event: 'smime.key_created', account: accountName(account) }, `S/MIME key and certificate made for ${accountName(account)}`);
    return identity;
  }

  /** SMIMESet mode=add: the key and certificate of a PKCS#12 file; the key unlocked. */
  async importPfx(account: AccountRecord, pfx: Buffer, filePassword: string | undefined, password: string | undefined): Promise<Identity> {
    const pass = checkPassword(password, 'password');
    const identity = this.readPfx(account, pfx, filePassword);
    await this.put(account, identity, pass, false, Date.now());
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
    const given = this.readPfx(account, pfx, filePassword);
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
    this.checkFailures(account);
    const record = await this.store.smime.getKey(account.id);
    if (!record) throw new ServiceError('the account has no S/MIME key');
    try {
      const keyPem = await this.passwordWork(() => openKey(record.sealedKey, pass, account.id));
      this.failures.delete(account.id);
      return { keyPem, certPem: record.certPem };
    } catch (err) {
      if (err instanceof WrongPasswordError) {
        this.recordFailure(account);
        this.log.warn({ event: 'smime.unlock_failed', account: accountName(account) }, `wrong S/MIME password for ${accountName(account)}`);
        throw new ServiceError('wrong S/MIME password');
      }
      throw err;
    }
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

  /** The key pair as a PKCS#12 file encrypted with `password` (the export URL). */
  exportPfx(account: AccountRecord, unlocked: Identity, password: string): Buffer {
    const pfx = writePfx(unlocked, password, accountName(account));
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
   * collected from signed mail; undefined when there is none (or it has expired).
   */
  async recipientCertificate(sender: AccountRecord, address: string, findAccount: (address: string) => Promise<AccountRecord | undefined>): Promise<string | undefined> {
    const now = Date.now();
    const local = await findAccount(address);
    if (local) {
      const own = await this.store.smime.getKey(local.id);
      if (own && certificateValidity(own.certPem).notAfter > now) return own.certPem;
    }
    const collected = await this.store.smime.getPeerCertificate(sender.id, address.toLowerCase());
    if (collected && collected.notAfter > now) return collected.certPem;
    return undefined;
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
   * Keeps the certificates of the signers of a message the account read, for the addresses in
   * `from` they are for (a certificate for someone else is not kept under the From address).
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
        for (const address of certificateAddresses(signer.signerPem)) {
          if (!wanted.has(address) || address === own) continue;
          try {
            const outcome = await this.store.smime.putPeerCertificate(
              { accountId: account.id, address, certPem: signer.signerPem, notAfter: validity.notAfter, updated: Date.now() },
              this.config.peerCertificates,
            );
            if (outcome === 'stored') this.log.info({ event: 'smime.certificate_collected', account: accountName(account), address }, `S/MIME certificate of ${address} kept for ${accountName(account)}`);
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

  private readPfx(account: AccountRecord, pfx: Buffer, filePassword: string | undefined): Identity {
    if (filePassword === undefined) throw new ServiceError('the filePassword attribute is missing');
    if (pfx.length === 0) throw new ServiceError('the PFX data is empty');
    if (pfx.length > this.config.maxPfxBytes) throw new ServiceError(`the PFX data is too large (at most ${this.config.maxPfxBytes} bytes)`);
    try {
      return readPfx(pfx, filePassword);
    } catch (err) {
      if (err instanceof SmimeInputError) {
        this.log.warn({ event: 'smime.pfx_refused', account: accountName(account), reason: err.message }, `PFX data refused for ${accountName(account)}: ${err.message}`);
        throw new ServiceError(err.message);
      }
      throw err;
    }
  }

  private async put(account: AccountRecord, identity: Identity, password: string, issued: boolean, now: number): Promise<void> {
    const sealedKey = await this.passwordWork(() => sealKey(identity.keyPem, password, account.id));
    try {
      await this.store.smime.putKey({ accountId: account.id, certPem: identity.certPem, sealedKey, issued, updated: now });
    } catch (err) {
      if (err instanceof NotFoundError) throw new ServiceError('the account is gone');
      throw err;
    }
  }
}
