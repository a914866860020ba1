/**
 * The S/MIME figure of issue 17: signing and then encrypting a 1 MB message (what messageSubmit
 * does for `<EMail encrypt="yes"><EMail sign="yes">…`), with ximssd's code (src/services/smime/:
 * multipart/signed with a detached SHA-256 signature, then enveloped data, AES-256-CBC, for the
 * recipient and the sender) beside Debian's `openssl smime -sign` and `openssl smime -encrypt -aes256`
 * on the same message, keys and certificates; and the way back (decrypt, then verify), as folderRead
 * does it, beside `openssl smime -decrypt` and `openssl smime -verify`. Each side's output is checked
 * by the other once before anything is timed; the sides are timed in turn, run by run.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseMime } from '../../src/services/mime/parse.js';
import { decryptEnveloped, encryptFor, issueIdentity, signDetached, verifyDetached, type Identity } from '../../src/services/smime/crypto.js';
import { envelopedMessage, signedMessage } from '../../src/services/smime/mime.js';
import { decodePartBody } from '../../src/services/mime/parts.js';
import { median } from './figures.js';

export type SmimeResult =
  | { available: false; reason: string }
  | {
      available: true;
      bytes: number;
      runs: number;
      ximssd: { signEncryptMs: number; decryptVerifyMs: number };
      openssl: { signEncryptMs: number; decryptVerifyMs: number; version: string };
    };

/** A message of about `bytes`: a short text part and a base64 attachment (what a 1 MB mail is). */
function benchMessage(bytes: number): Buffer {
  const data = Buffer.alloc(Math.floor((bytes * 3) / 4));
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
  const attachment = (data.toString('base64').match(/.{1,76}/g) ?? []).join('\r\n');
  return Buffer.from(
    'From: Sender <sender@bench.test>\r\nTo: Recipient <recipient@bench.test>\r\nSubject: S/MIME bench\r\n' +
      'Date: Mon, 07 Dec 2026 12:00:00 +0000\r\nMessage-ID: <smime-bench@bench.test>\r\nMIME-Version: 1.0\r\n' +
      'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThe file is attached.\r\n' +
      '--b\r\nContent-Type: application/octet-stream; name="data.bin"\r\nContent-Transfer-Encoding: base64\r\n' +
      `Content-Disposition: attachment; filename="data.bin"\r\n\r\n${attachment}\r\n--b--\r\n`,
    'latin1',
  );
}

async function ximssdSignEncrypt(raw: Buffer, sender: Identity, recipientCert: string): Promise<Buffer> {
  const signed = await signedMessage(raw, (entity) => signDetached(entity, sender, Date.now()));
  return envelopedMessage(raw, encryptFor(signed, [recipientCert, sender.certPem]));
}

async function ximssdDecryptVerify(message: Buffer, recipient: Identity): Promise<number> {
  const root = parseMime(message);
  const inner = decryptEnveloped(decodePartBody(message, root), recipient).content;
  const signed = parseMime(inner);
  const [content, signature] = signed.children;
  if (!content || !signature) throw new Error('the decrypted message is not multipart/signed');
  const checks = await verifyDetached(inner.subarray(content.headerStart, content.end), decodePartBody(inner, signature), Date.now());
  return checks.length;
}

function openssl(args: readonly string[]): Buffer {
  return execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 });
}

export async function smimeBench(options: { bytes: number; runs: number }): Promise<SmimeResult> {
  let version: string;
  try {
    version = openssl(['version']).toString().trim();
  } catch {
    return { available: false, reason: 'openssl is not installed (apt-get install openssl)' };
  }
  const dir = mkdtempSync(join(tmpdir(), 'ximssd-smime-bench-'));
  try {
    const now = Date.now();
    const sender = await issueIdentity('sender@bench.test', 'Sender', 2048, 30, now);
    const recipient = await issueIdentity('recipient@bench.test', 'Recipient', 2048, 30, now);
    const file = (name: string, data: string | Buffer): string => {
      const path = join(dir, name);
      writeFileSync(path, data);
      return path;
    };
    const senderKey = file('sender.key', sender.keyPem);
    const senderCert = file('sender.crt', sender.certPem);
    const recipientKey = file('recipient.key', recipient.keyPem);
    const recipientCert = file('recipient.crt', recipient.certPem);
    const raw = benchMessage(options.bytes);
    const message = file('message.eml', raw);
    const signedPath = join(dir, 'signed.eml');
    const encryptedPath = join(dir, 'encrypted.eml');
    const decryptedPath = join(dir, 'decrypted.eml');
    const opensslSignEncrypt = (): void => {
      openssl(['smime', '-sign', '-md', 'sha256', '-signer', senderCert, '-inkey', senderKey, '-in', message, '-out', signedPath]);
      openssl(['smime', '-encrypt', '-aes256', '-in', signedPath, '-out', encryptedPath, recipientCert, senderCert]);
    };
    const opensslDecryptVerify = (): void => {
      openssl(['smime', '-decrypt', '-inkey', recipientKey, '-recip', recipientCert, '-in', encryptedPath, '-out', decryptedPath]);
      openssl(['smime', '-verify', '-noverify', '-in', decryptedPath, '-out', '/dev/null']);
    };

    // Each side's output read by the other, once, untimed.
    const ours = await ximssdSignEncrypt(raw, sender, recipient.certPem);
    const oursPath = file('ours.eml', ours);
    openssl(['smime', '-decrypt', '-inkey', recipientKey, '-recip', recipientCert, '-in', oursPath, '-out', decryptedPath]);
    openssl(['smime', '-verify', '-noverify', '-in', decryptedPath, '-out', '/dev/null']);
    opensslSignEncrypt();
    if ((await ximssdDecryptVerify(readFileSync(encryptedPath), recipient)) !== 1) throw new Error("ximssd did not verify openssl's signature");

    const times = { xs: [] as number[], xd: [] as number[], os: [] as number[], od: [] as number[] };
    for (let run = 0; run < options.runs; run++) {
      let t = performance.now();
      const sealed = await ximssdSignEncrypt(raw, sender, recipient.certPem);
      times.xs.push(performance.now() - t);
      t = performance.now();
      if ((await ximssdDecryptVerify(sealed, recipient)) !== 1) throw new Error('ximssd did not verify its own signature');
      times.xd.push(performance.now() - t);
      t = performance.now();
      opensslSignEncrypt();
      times.os.push(performance.now() - t);
      t = performance.now();
      opensslDecryptVerify();
      times.od.push(performance.now() - t);
    }
    return {
      available: true,
      bytes: raw.length,
      runs: options.runs,
      ximssd: { signEncryptMs: median(times.xs), decryptVerifyMs: median(times.xd) },
      openssl: { signEncryptMs: median(times.os), decryptVerifyMs: median(times.od), version },
    };
  } catch (err) {
    return { available: false, reason: err instanceof Error ? err.message.split('\n')[0]! : String(err) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
