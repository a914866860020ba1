/**
 * S/MIME over the wire (spec "Secure Messaging (S/MIME)" and the S/MIME parts of "Message
 * Operations"): SMIMESet (new, add from a PFX in the body or uploaded, update, delete), SMIMEGet,
 * SMIMEUnlock/SMIMELock (per session; duration), SMIMEModifyPassword; signing and encryption on
 * messageAppend/messageSubmit; folderRead verifying and decrypting; the CertAndKey.pfx export.
 * Interop both ways with Debian's openssl (smime and cms): what the server signs and encrypts,
 * openssl verifies and decrypts; what openssl signs and encrypts, folderRead shows.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { XmlElement } from '../src/xml/element.js';
import { SmimeService } from '../src/services/smime/service.js';
import { silentLogger } from '../src/log.js';
import { capturingLogger, deliverRaw, eventually, fails, httpRequest, ok, postUpload, storedMessages, storedRaw, startTestServer, type TestServer, type XimssClient } from './helpers.js';

let server: TestServer;
let work: string;

function openssl(args: readonly string[], input?: Buffer): Buffer {
  return execFileSync('openssl', args, { input, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** An outside correspondent: a key and a self-signed certificate made by openssl, and its PFX. */
function outsider(address: string, name: string, days = 30): { key: string; cert: string; pfx: Buffer } {
  const key = join(work, `${name}.key`);
  const cert = join(work, `${name}.crt`);
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', String(days), '-subj', `/CN=${name}/emailAddress=${address}`, '-addext', `subjectAltName=email:${address}`]);
  const pfx = join(work, `${name}.pfx`);
  openssl(['pkcs12', '-export', '-inkey', key, '-in', cert, '-out', pfx, '-passout', 'pass:file-pass']);
  return { key, cert, pfx: readFileSync(pfx) };
}

function file(name: string, data: Buffer | string): string {
  const path = join(work, name);
  writeFileSync(path, data);
  return path;
}

async function readMessage(client: XimssClient, uid: number): Promise<XmlElement> {
  const reply = await ok(client, `<folderRead folder="INBOX" UID="${uid}"/>`);
  const message = reply.messages.find((m) => m.name === 'folderMessage');
  assert.ok(message, 'a folderMessage');
  return message.element('EMail')!;
}

async function openInbox(client: XimssClient): Promise<void> {
  await ok(client, '<folderOpen folder="INBOX" mailbox="INBOX"><field>UID</field></folderOpen>');
}

async function withKey(name: string, password = 'smime-pass'): Promise<{ address: string; client: XimssClient; urlID: string }> {
  const address = await server.newAccount(name, { realName: `${name} Tëster` });
  const session = await server.login(address, 'secret');
  await ok(session.client, `<SMIMESet mode="new" password="${password}"/>`);
  return { address, ...session };
}

const SIGNED_APPEND = (subject: string) =>
  `<messageAppend targetMailbox="INBOX"><EMail sign="yes"><Subject>${subject}</Subject><To>someone@example.test</To>` +
  `<MIME type="text" subtype="plain">Dear Susan,&#x0A;I will come.&#x0A;</MIME></EMail></messageAppend>`;

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'ximssd-smime-'));
  // Small limits, so that the review fixes' cases reach them (the other cases stay under them).
  server = await startTestServer({ smime: { maxUnlockFailures: 4, pfxExportsPerHour: 3, maxConvertMessages: 3 } });
});
after(async () => {
  await server.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('keys', () => {
  test('SMIMESet new: SMIMEGet shows the certificate; the store keeps the key sealed, never in clear', async () => {
    const address = await server.newAccount('keys', { realName: 'Kéy Öwner' });
    const { client } = await server.login(address, 'secret');
    await fails(client, '<SMIMEGet type="certificate"/>', /no S\/MIME certificate/);
    await fails(client, '<SMIMESet mode="new"/>', /password attribute is missing/);
    await ok(client, '<SMIMESet mode="new" password="smime-pass"/>');
    const reply = await ok(client, '<SMIMEGet type="certificate"/>');
    const x509 = reply.messages.find((m) => m.name === 'certificate')?.element('x509');
    assert.ok(x509, 'a certificate data message with an x509 element');
    assert.equal(x509.attrs.subject, address);
    assert.equal(x509.element('subject')?.element('cn')?.text(), 'Kéy Öwner');
    assert.equal(x509.element('subject')?.element('contact')?.text(), address);
    assert.match(x509.element('validTill')?.text() ?? '', /^\d{8}T\d{6}Z$/);
    const account = (await server.services.accounts.find(address))!;
    const record = (await server.services.store.smime.getKey(account.id))!;
    assert.match(record.sealedKey, /^s1\./);
    assert.doesNotMatch(record.sealedKey, /PRIVATE KEY/);
    // The sealed text holds no part of the key's DER in clear (its PKCS#8 header, say).
    const exported = await httpRequest(server.ports.http, '/Session/none/CertAndKey.pfx?PFXPassword=x');
    assert.equal(exported.status, 550, 'an unknown session');
    await fails(client, '<SMIMEGet type="private"/>', /unsupported type/);
  });

  test('readStatus options: S/MIME; SMIMEActive while unlocked, SMIMEInactive while locked, neither without a key', async () => {
    const options = async (client: XimssClient): Promise<string[]> =>
      (await ok(client, '<readStatus/>')).messages[0]!.elements('option').map((o) => o.text());
    const address = await server.newAccount('status');
    const { client } = await server.login(address, 'secret');
    assert.deepEqual(await options(client), ['S/MIME']);
    await ok(client, '<SMIMESet mode="new" password="pw"/>');
    assert.deepEqual(await options(client), ['S/MIME', 'SMIMEActive']);
    await ok(client, '<SMIMELock/>');
    assert.deepEqual(await options(client), ['S/MIME', 'SMIMEInactive']);
  });

  test('SMIMEUnlock / SMIMELock per session; wrong passwords; SMIMEModifyPassword; duration', async () => {
    const { address, client } = await withKey('lock');
    // New keys stay unlocked: signing works at once.
    await ok(client, SIGNED_APPEND('unlocked at creation'));
    await ok(client, '<SMIMELock/>');
    await fails(client, SIGNED_APPEND('locked'), /locked/);
    await fails(client, '<SMIMEUnlock password="wrong"/>', /wrong S\/MIME password/);
    await fails(client, '<SMIMEModifyPassword password="new-pass"/>', /locked/);
    await ok(client, '<SMIMEUnlock password="smime-pass"/>');
    await ok(client, SIGNED_APPEND('unlocked again'));
    // Another session of the same account is not unlocked.
    const other = await server.login(address, 'secret');
    await fails(other.client, SIGNED_APPEND('other session'), /locked/);
    await ok(client, '<SMIMEModifyPassword password="new-pass"/>');
    await fails(other.client, '<SMIMEUnlock password="smime-pass"/>', /wrong S\/MIME password/);
    await ok(other.client, '<SMIMEUnlock password="new-pass"/>');
    await fails(other.client, '<SMIMEUnlock password="new-pass" duration="soon"/>', /invalid duration/);
    // A duration locks the key again when it runs out.
    await ok(other.client, '<SMIMEUnlock password="new-pass" duration="1"/>');
    await eventually(async () => /locked/.test(((await other.client.request(SIGNED_APPEND('expiring'))).response.attrs.errorText ?? '')), 'the key locked again after its duration');
  });

  test('SMIMESet add from a PFX (body and uploaded file): wrong file password and damaged data refused; delete needs the same key', async () => {
    const address = await server.newAccount('pfx');
    const session = await server.login(address, 'secret');
    const { client } = session;
    const bob = outsider(address, 'pfxowner');
    const body = bob.pfx.toString('base64');
    await fails(client, `<SMIMESet mode="add" password="p" filePassword="wrong"><PFX><base64>${body}</base64></PFX></SMIMESet>`, /wrong PFX password/);
    const damaged = Buffer.from(bob.pfx);
    damaged[Math.floor(damaged.length / 2)]! ^= 0xff;
    await fails(client, `<SMIMESet mode="add" password="p" filePassword="file-pass"><PFX><base64>${damaged.toString('base64')}</base64></PFX></SMIMESet>`, /PFX/);
    await fails(client, `<SMIMESet mode="add" password="p" filePassword="file-pass"><PFX><base64>not base64!</base64></PFX></SMIMESet>`, /base64/);
    await fails(client, '<SMIMESet mode="add" password="p" filePassword="file-pass" PFX="nothing"/>', /uploaded file not found/);
    await ok(client, `<SMIMESet mode="add" password="p" filePassword="file-pass"><PFX><base64>${body}</base64></PFX></SMIMESet>`);
    const cert = (await ok(client, '<SMIMEGet type="certificate"/>')).messages[0]!.element('x509')!;
    assert.equal(cert.element('subject')?.element('cn')?.text(), 'pfxowner');
    // An imported certificate is not the server's to renew.
    await fails(client, '<SMIMESet mode="update"/>', /not issued by this server/);
    // Delete with another key: refused; with the same key (uploaded): removed.
    const stranger = outsider('stranger@example.test', 'stranger');
    await fails(client, `<SMIMESet mode="delete" filePassword="file-pass"><PFX><base64>${stranger.pfx.toString('base64')}</base64></PFX></SMIMESet>`, /not the account's S\/MIME key/);
    await postUpload(server, session, 'mine', bob.pfx, 'bob.pfx', 'application/x-pkcs12');
    await ok(client, '<SMIMESet mode="delete" filePassword="file-pass" PFX="mine"/>');
    await fails(client, '<SMIMEGet type="certificate"/>', /no S\/MIME certificate/);
    await fails(client, SIGNED_APPEND('no key'), /locked/);
    await fails(client, '<SMIMESet mode="sideways" password="p"/>', /invalid mode/);
  });

  test('SMIMESet update renews the server-issued certificate of the same key', async () => {
    const { client } = await withKey('renew');
    const before = (await ok(client, '<SMIMEGet/>')).messages[0]!.element('x509')!.attrs.serialNumber;
    await ok(client, '<SMIMESet mode="update"/>');
    const after = (await ok(client, '<SMIMEGet/>')).messages[0]!.element('x509')!.attrs.serialNumber;
    assert.notEqual(after, before);
    await ok(client, SIGNED_APPEND('signed after renewal'));
  });

  test('the CertAndKey.pfx export: locked, mismatched passwords refused; openssl reads the file', async () => {
    const { client, urlID } = await withKey('export');
    await ok(client, '<SMIMELock/>');
    assert.equal((await httpRequest(server.ports.http, `/Session/${urlID}/CertAndKey.pfx?PFXPassword=out-pass`)).status, 403);
    await ok(client, '<SMIMEUnlock password="smime-pass"/>');
    assert.equal((await httpRequest(server.ports.http, `/Session/${urlID}/CertAndKey.pfx?PFXPassword=out-pass&PFXPassword1=other`)).status, 400);
    assert.equal((await httpRequest(server.ports.http, `/Session/${urlID}/CertAndKey.pfx`)).status, 400);
    const response = await fetch(`http://127.0.0.1:${server.ports.http}/Session/${urlID}/CertAndKey.pfx?PFXPassword=out-pass&PFXPassword1=out-pass`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'application/x-pkcs12');
    const pfx = file('export.pfx', Buffer.from(await response.arrayBuffer()));
    const pem = openssl(['pkcs12', '-in', pfx, '-passin', 'pass:out-pass', '-nodes']).toString();
    assert.match(pem, /BEGIN PRIVATE KEY/);
    assert.match(pem, /BEGIN CERTIFICATE/);
    assert.throws(() => openssl(['pkcs12', '-in', pfx, '-passin', 'pass:wrong', '-nodes']));
  });
});

describe('signing and encryption', () => {
  test('messageAppend sign: multipart/signed that openssl smime verifies; folderRead shows the signer', async () => {
    const { address, client } = await withKey('signer');
    await openInbox(client);
    const account = (await server.services.accounts.find(address))!;
    await ok(client, SIGNED_APPEND('Signed note'));
    const [stored] = await storedMessages(server, address, 'INBOX');
    assert.ok(stored);
    assert.match(stored.raw.toString('latin1'), /Content-Type: multipart\/signed; protocol="application\/pkcs7-signature"; micalg=sha-256/);
    const message = file('signed.eml', stored.raw);
    const verified = openssl(['smime', '-verify', '-noverify', '-in', message]).toString();
    assert.match(verified, /Dear Susan,\r?\nI will come\./);
    assert.ok(account);
    const email = await readMessage(client, stored.uid);
    const top = email.element('MIME')!;
    assert.deepEqual([top.attrs.type, top.attrs.subtype], ['multipart', 'signed']);
    const [content] = top.elements('MIME');
    assert.equal(content!.text(), 'Dear Susan,\nI will come.\n');
    const signers = top.element('SMIMESignature')!.elements('x509');
    assert.equal(signers.length, 1);
    assert.equal(signers[0]!.attrs.subject, address);
    assert.equal(signers[0]!.attrs.validationError, 'presented certificate is issued by an unknown authority');
    // Altered after signing: no signature matches, the SMIMESignature element is empty.
    const altered = Buffer.from(stored.raw.toString('latin1').replace('I will come.', 'I will not come.'), 'latin1');
    const [uid] = await deliverRaw(server, address, 'INBOX', [altered]);
    const tampered = await readMessage(client, uid!);
    assert.equal(tampered.element('MIME')!.element('SMIMESignature')!.children.length, 0);
    // Text that is not ASCII is signed quoted-printable (7 bits survive any relay) and still verifies.
    await ok(client, `<messageAppend targetMailbox="INBOX"><EMail sign="yes"><Subject>Umlaut</Subject><MIME type="text" subtype="plain">Grüße aus Köln&#x0A;</MIME></EMail></messageAppend>`);
    const utf8 = (await storedMessages(server, address, 'INBOX')).at(-1)!;
    assert.match(utf8.raw.toString('latin1'), /Content-Transfer-Encoding: quoted-printable/);
    assert.match(openssl(['smime', '-verify', '-noverify', '-in', file('utf8.eml', utf8.raw)]).toString('latin1'), /Gr=C3=BC=C3=9Fe/);
    const shown = (await readMessage(client, utf8.uid)).element('MIME')!;
    assert.equal(shown.elements('MIME')[0]!.text(), 'Grüße aus Köln\n');
    assert.equal(shown.element('SMIMESignature')!.elements('x509').length, 1);
  });

  test('messageSubmit encrypt (inner EMail signed) to a local account: locked shows the attachment, unlocked the decrypted message; openssl decrypts it too', async () => {
    const alice = await withKey('alice');
    const bob = await withKey('bob', 'bob-pass');
    await ok(bob.client, '<SMIMELock/>');
    await openInbox(bob.client);
    await ok(
      alice.client,
      `<messageSubmit><EMail encrypt="yes"><Subject>Outer subject</Subject><To>${bob.address}</To>` +
        `<EMail sign="yes"><Subject>Inner subject</Subject><To>${bob.address}</To><MIME type="text" subtype="plain">secret text&#x0A;</MIME></EMail>` +
        `</EMail></messageSubmit>`,
    );
    const [delivered] = await eventually(async () => {
      const messages = await storedMessages(server, bob.address, 'INBOX');
      return messages.length > 0 ? messages : undefined;
    }, 'the encrypted message in bob INBOX');
    const raw = delivered!.raw.toString('latin1');
    assert.match(raw, /Content-Type: application\/pkcs7-mime; smime-type=enveloped-data/);
    assert.doesNotMatch(raw, /secret text|Inner subject/);
    assert.match(raw, /Subject: Outer subject/);

    const locked = await readMessage(bob.client, delivered!.uid);
    const part = locked.element('MIME')!;
    assert.deepEqual([part.attrs.type, part.attrs.subtype, part.attrs['Type-smime-type'], part.children.length], ['application', 'pkcs7-mime', 'enveloped-data', 0]);

    await ok(bob.client, '<SMIMEUnlock password="bob-pass"/>');
    const open = (await readMessage(bob.client, delivered!.uid)).element('MIME')!;
    assert.deepEqual([open.attrs.cipherName, open.attrs.keyLength], ['AES', '256']);
    const inner = open.element('EMail')!;
    assert.equal(inner.attrs.partID, 'E');
    assert.equal(inner.element('Subject')!.text(), 'Inner subject');
    const signed = inner.element('MIME')!;
    assert.equal(signed.attrs.subtype, 'signed');
    assert.equal(signed.elements('MIME')[0]!.text(), 'secret text\n');
    assert.equal(signed.element('SMIMESignature')!.element('x509')!.attrs.subject, alice.address);

    // openssl: bob's exported key decrypts it; the content is alice's signed message.
    const pfx = await fetch(`http://127.0.0.1:${server.ports.http}/Session/${bob.urlID}/CertAndKey.pfx?PFXPassword=x`);
    const keys = file('bob.pem', openssl(['pkcs12', '-in', file('bob.pfx', Buffer.from(await pfx.arrayBuffer())), '-passin', 'pass:x', '-nodes']));
    const decrypted = openssl(['cms', '-decrypt', '-in', file('enc.eml', delivered!.raw), '-inkey', keys]);
    assert.match(decrypted.toString('latin1'), /Subject: Inner subject/);
    const content = openssl(['smime', '-verify', '-noverify', '-in', file('dec.eml', decrypted)]).toString();
    assert.match(content, /secret text/);
    // The sender's copy would be readable by the sender: alice's certificate is a recipient too.
    const recipients = openssl(['cms', '-cmsout', '-print', '-in', file('enc2.eml', delivered!.raw)]).toString();
    assert.ok(recipients.includes(`emailAddress=${alice.address}`), 'alice is a recipient');
    assert.ok(recipients.includes(`emailAddress=${bob.address}`), 'bob is a recipient');
  });

  test('encryption needs every recipient\'s certificate; sign and encrypt together on the topmost EMail is refused', async () => {
    const alice = await withKey('alice-e');
    const carol = await server.newAccount('carol');
    await fails(
      alice.client,
      `<messageSubmit><EMail encrypt="yes"><To>${carol}</To><MIME type="text" subtype="plain">x</MIME></EMail></messageSubmit>`,
      new RegExp(`no S/MIME certificate for ${carol}`),
    );
    await fails(alice.client, '<messageSubmit><EMail encrypt="yes"><To>nobody@elsewhere.test</To><MIME type="text" subtype="plain">x</MIME></EMail></messageSubmit>', /no S\/MIME certificate for nobody@elsewhere\.test/);
    await fails(alice.client, `<messageSubmit><EMail encrypt="yes" sign="yes"><To>${alice.address}</To><MIME type="text" subtype="plain">x</MIME></EMail></messageSubmit>`, /both sign and encrypt/);
    await fails(alice.client, `<messageSubmit><EMail><To>${alice.address}</To><EMail><MIME type="text" subtype="plain">x</MIME></EMail></EMail></messageSubmit>`, /needs encrypt="yes"/);
    const plain = await server.newAccount('nokey');
    const { client } = await server.login(plain, 'secret');
    await fails(client, '<messageAppend targetMailbox="INBOX"><EMail encrypt="yes"><MIME type="text" subtype="plain">x</MIME></EMail></messageAppend>', /no S\/MIME certificate/);
  });

  test('messageAppend encrypt: the user\'s own certificate; openssl cms decrypts with the exported key', async () => {
    const me = await withKey('self');
    await openInbox(me.client);
    await ok(me.client, '<messageAppend targetMailbox="INBOX"><EMail encrypt="yes"><Subject>Note</Subject><MIME type="text" subtype="plain">just for me&#x0A;</MIME></EMail></messageAppend>');
    const [stored] = await storedMessages(server, me.address, 'INBOX');
    const pfx = await fetch(`http://127.0.0.1:${server.ports.http}/Session/${me.urlID}/CertAndKey.pfx?PFXPassword=z`);
    const keys = file('self.pem', openssl(['pkcs12', '-in', file('self.pfx', Buffer.from(await pfx.arrayBuffer())), '-passin', 'pass:z', '-nodes']));
    const decrypted = openssl(['smime', '-decrypt', '-in', file('self.eml', stored!.raw), '-inkey', keys]).toString('latin1');
    assert.match(decrypted, /Content-Type: text\/plain/);
    assert.match(decrypted, /just for me/);
    const shown = (await readMessage(me.client, stored!.uid)).element('MIME')!;
    assert.equal(shown.element('MIME')!.text(), 'just for me\n');
  });
});

describe('messageCopy and messageMove', () => {
  test('encrypt="yes" copies encrypted with the own certificate (openssl decrypts them); decrypt="yes" needs the unlocked key and gives the plain message back', async () => {
    const me = await withKey('mover');
    await openInbox(me.client);
    const [uid] = await deliverRaw(server, me.address, 'INBOX', [
      { raw: Buffer.from('From: a@remote.test\r\nSubject: Plain\r\nContent-Type: text/plain\r\n\r\nplain words\r\n'), flags: 'Seen,Flagged' },
    ]);
    const copied = await ok(me.client, `<messageCopy folder="INBOX" targetMailbox="Vault" mailboxClass="" encrypt="yes" report="uid"><UID>${uid}</UID></messageCopy>`);
    const vaultUid = Number(copied.messages.find((m) => m.name === 'messageAdded')!.attrs.UID);
    const [vault] = await storedMessages(server, me.address, 'Vault');
    assert.equal(vault!.uid, vaultUid);
    const text = vault!.raw.toString('latin1');
    assert.match(text, /Subject: Plain/);
    assert.match(text, /application\/pkcs7-mime; smime-type=enveloped-data/);
    assert.doesNotMatch(text, /plain words/);
    const pfx = await fetch(`http://127.0.0.1:${server.ports.http}/Session/${me.urlID}/CertAndKey.pfx?PFXPassword=m`);
    const keys = file('mover.pem', openssl(['pkcs12', '-in', file('mover.pfx', Buffer.from(await pfx.arrayBuffer())), '-passin', 'pass:m', '-nodes']));
    assert.match(openssl(['smime', '-decrypt', '-in', file('vault.eml', vault!.raw), '-inkey', keys]).toString(), /plain words/);
    const account = (await server.services.accounts.find(me.address))!;
    const box = await server.services.mail.access(account, 'Vault', 'r');
    const meta = (await server.services.mail.getMessage(box, vaultUid))!;
    assert.ok(meta.flags & 1 && meta.flags & 4, 'Seen and Flagged kept');

    // Decrypted back by a move into another mailbox: needs the unlocked key.
    await ok(me.client, '<folderOpen folder="Vault" mailbox="Vault"><field>UID</field></folderOpen>');
    await ok(me.client, '<SMIMELock/>');
    await fails(me.client, `<messageMove folder="Vault" targetMailbox="Clear" mailboxClass="" decrypt="yes"><UID>${vaultUid}</UID></messageMove>`, /locked/);
    await ok(me.client, '<SMIMEUnlock password="smime-pass"/>');
    await ok(me.client, `<messageMove folder="Vault" targetMailbox="Clear" mailboxClass="" decrypt="yes"><UID>${vaultUid}</UID></messageMove>`);
    assert.equal((await storedMessages(server, me.address, 'Vault')).length, 0, 'moved');
    const [clear] = await storedMessages(server, me.address, 'Clear');
    const back = clear!.raw.toString('latin1');
    assert.match(back, /Subject: Plain/);
    assert.match(back, /Content-Type: text\/plain/);
    assert.match(back, /plain words/);
    assert.doesNotMatch(back, /pkcs7/);
    // Something encrypted for another key cannot be decrypted: an error, nothing copied.
    const other = outsider('someone@remote.test', 'Someone');
    const foreign = openssl(['smime', '-encrypt', '-aes256', '-in', file('f.txt', 'Content-Type: text/plain\r\n\r\nx\r\n'), '-subject', 'foreign', other.cert]);
    const [foreignUid] = await deliverRaw(server, me.address, 'INBOX', [foreign]);
    await ok(me.client, '<folderClose folder="INBOX"/>');
    await openInbox(me.client);
    await fails(me.client, `<messageCopy folder="INBOX" targetMailbox="Clear" decrypt="yes"><UID>${foreignUid}</UID></messageCopy>`, /not encrypted for this account/);
    assert.equal((await storedMessages(server, me.address, 'Clear')).length, 1);
  });
});

describe('mail from openssl', () => {
  test('openssl-signed mail: the signer shown, the certificate collected, then mail encrypted for that address', async () => {
    const me = await withKey('collector');
    await openInbox(me.client);
    const ext = outsider('ext@remote.test', 'External');
    const content = file('ext-content.txt', 'Content-Type: text/plain\r\n\r\nsigned by openssl\r\n');
    const signed = openssl(['smime', '-sign', '-in', content, '-signer', ext.cert, '-inkey', ext.key, '-from', 'ext@remote.test', '-to', me.address, '-subject', 'From outside']);
    const [uid] = await deliverRaw(server, me.address, 'INBOX', [signed]);
    const top = (await readMessage(me.client, uid!)).element('MIME')!;
    assert.equal(top.attrs.subtype, 'signed');
    assert.equal(top.elements('MIME')[0]!.text(), 'signed by openssl\r\n'.replace('\r\n', '\n'));
    const signer = top.element('SMIMESignature')!.element('x509')!;
    assert.equal(signer.attrs.subject, 'ext@remote.test');
    assert.equal(signer.element('subject')!.element('cn')!.text(), 'External');
    const account = (await server.services.accounts.find(me.address))!;
    assert.ok(await server.services.store.smime.getPeerCertificate(account.id, 'ext@remote.test'), 'kept for the address');
    // Now mail can be encrypted for that address; openssl decrypts it with the outsider's key.
    await ok(me.client, `<messageSubmit targetMailbox="Sent" mailboxClass=""><EMail encrypt="yes"><To>ext@remote.test</To><Subject>Reply</Subject><MIME type="text" subtype="plain">for your eyes&#x0A;</MIME></EMail></messageSubmit>`);
    const [copy] = await storedMessages(server, me.address, 'Sent');
    const decrypted = openssl(['smime', '-decrypt', '-in', file('reply.eml', copy!.raw), '-inkey', ext.key, '-recip', ext.cert]).toString();
    assert.match(decrypted, /for your eyes/);
  });

  test('openssl-encrypted mail (AES and 3DES; smime and cms): decrypted when unlocked, the spec\'s attachment when locked', async () => {
    const me = await withKey('reader');
    await openInbox(me.client);
    const pfx = await fetch(`http://127.0.0.1:${server.ports.http}/Session/${me.urlID}/CertAndKey.pfx?PFXPassword=w`);
    const cert = file('reader.crt', openssl(['pkcs12', '-in', file('reader.pfx', Buffer.from(await pfx.arrayBuffer())), '-passin', 'pass:w', '-nokeys', '-clcerts']));
    const content = file('reader-content.txt', 'Content-Type: text/plain; charset=utf-8\r\n\r\nencrypted by openssl\r\n');
    const aes = openssl(['smime', '-encrypt', '-aes256', '-in', content, '-from', 'x@remote.test', '-to', me.address, '-subject', 'AES', cert]);
    const des = openssl(['cms', '-encrypt', '-des3', '-in', content, '-subject', '3DES', cert]);
    const uids = await deliverRaw(server, me.address, 'INBOX', [aes, des]);
    const expected = [['AES', '256'], ['3DES', '168']];
    for (const [i, uid] of uids.entries()) {
      const part = (await readMessage(me.client, uid)).element('MIME')!;
      assert.deepEqual([part.attrs.cipherName, part.attrs.keyLength], expected[i]);
      assert.equal(part.element('MIME')!.text(), 'encrypted by openssl\n');
    }
    await ok(me.client, '<SMIMELock/>');
    const locked = (await readMessage(me.client, uids[0]!)).element('MIME')!;
    assert.equal(locked.attrs.cipherName, undefined);
    assert.equal(locked.children.length, 0);
    assert.equal(locked.attrs.disposition, 'attachment');
    // Encrypted for someone else: decryptionError when unlocked.
    const other = outsider('other@remote.test', 'Other');
    const foreign = openssl(['smime', '-encrypt', '-aes256', '-in', content, '-subject', 'not for me', other.cert]);
    const [foreignUid] = await deliverRaw(server, me.address, 'INBOX', [foreign]);
    await ok(me.client, '<SMIMEUnlock password="smime-pass"/>');
    const refused = (await readMessage(me.client, foreignUid!)).element('MIME')!;
    assert.match(refused.attrs.decryptionError ?? '', /not encrypted for this account/);
    assert.ok(await storedRaw(server, me.address, 'INBOX', foreignUid!));
  });
});

describe('the log', () => {
  test('smime.* events for keys made, locked, unlocked, wrong passwords and exports; no password or key in any line', async () => {
    const capture = capturingLogger('info');
    const logged = await startTestServer({}, { log: capture.log });
    try {
      const address = await logged.newAccount('logged');
      const { client, urlID } = await logged.login(address, 'secret');
      await ok(client, '<SMIMESet mode="new" password="very-secret-smime"/>');
      await ok(client, '<SMIMELock/>');
      await fails(client, '<SMIMEUnlock password="wrong-guess-1"/>', /wrong/);
      await ok(client, '<SMIMEUnlock password="very-secret-smime" duration="60"/>');
      assert.equal((await fetch(`http://127.0.0.1:${logged.ports.http}/Session/${urlID}/CertAndKey.pfx?PFXPassword=export-secret`)).status, 200);
      await ok(client, '<SMIMEModifyPassword password="another-secret"/>');
      assert.equal(capture.events('smime.key_created')[0]?.account, address);
      assert.equal(capture.events('smime.locked')[0]?.reason, 'SMIMELock');
      assert.equal(capture.events('smime.unlock_failed').length, 1);
      assert.equal(capture.events('smime.unlocked').at(-1)?.seconds, 60);
      assert.equal(capture.events('smime.key_exported').length, 1);
      assert.equal(capture.events('smime.password_changed').length, 1);
      const all = JSON.stringify(capture.records);
      for (const secret of ['very-secret-smime', 'wrong-guess-1', 'export-secret', 'another-secret', 'PRIVATE KEY']) assert.ok(!all.includes(secret), `${secret} is not logged`);
    } finally {
      await logged.stop();
    }
  });
});

describe('review fixes (issue 17)', () => {
  test('a collected certificate is not replaced by a later self-signed one for the same address; encrypting for an untrusted one works', async () => {
    const me = await withKey('forged');
    await openInbox(me.client);
    const real = outsider('target@remote.test', 'Real');
    const forger = outsider('target@remote.test', 'Forger', 60);
    const sign = (who: { cert: string; key: string }, name: string) =>
      openssl(['smime', '-sign', '-in', file(`${name}.txt`, `Content-Type: text/plain\r\n\r\n${name}\r\n`), '-signer', who.cert, '-inkey', who.key, '-from', 'target@remote.test', '-to', me.address, '-subject', name]);
    const [first] = await deliverRaw(server, me.address, 'INBOX', [sign(real, 'first')]);
    await readMessage(me.client, first!);
    const account = (await server.services.accounts.find(me.address))!;
    const kept = (await server.services.store.smime.getPeerCertificate(account.id, 'target@remote.test'))!;
    assert.equal(kept.trusted, false, 'a self-signed certificate is kept as untrusted');
    // The forger's certificate is made later, so it expires later: it must not replace the first.
    const [second] = await deliverRaw(server, me.address, 'INBOX', [sign(forger, 'second')]);
    await readMessage(me.client, second!);
    assert.equal((await server.services.store.smime.getPeerCertificate(account.id, 'target@remote.test'))!.certPem, kept.certPem, 'the first one stays');
    // Signed by a certificate for another address, under this From: not kept.
    const other = outsider('someone-else@remote.test', 'Else');
    const misnamed = openssl(['smime', '-sign', '-in', file('misnamed.txt', 'Content-Type: text/plain\r\n\r\nx\r\n'), '-signer', other.cert, '-inkey', other.key, '-from', 'nobody-yet@remote.test', '-subject', 'misnamed']);
    const [third] = await deliverRaw(server, me.address, 'INBOX', [misnamed]);
    await readMessage(me.client, third!);
    assert.equal(await server.services.store.smime.getPeerCertificate(account.id, 'nobody-yet@remote.test'), undefined);
    assert.equal(await server.services.store.smime.getPeerCertificate(account.id, 'someone-else@remote.test'), undefined);
    // Mail for the address is encrypted for the first (real) certificate: its key decrypts it.
    await ok(me.client, `<messageSubmit targetMailbox="Sent" mailboxClass=""><EMail encrypt="yes"><To>target@remote.test</To><MIME type="text" subtype="plain">to the real one&#x0A;</MIME></EMail></messageSubmit>`);
    const [copy] = await storedMessages(server, me.address, 'Sent');
    assert.match(openssl(['smime', '-decrypt', '-in', file('real.eml', copy!.raw), '-inkey', real.key, '-recip', real.cert]).toString(), /to the real one/);
    assert.throws(() => openssl(['smime', '-decrypt', '-in', file('forged.eml', copy!.raw), '-inkey', forger.key, '-recip', forger.cert]));
  });

  test('SMIMESet new/add refused over an existing key that is not unlocked; with it unlocked, replaced; two sessions racing: one wins', async () => {
    const { address, client } = await withKey('replace');
    const serial = async (c: XimssClient) => (await ok(c, '<SMIMEGet/>')).messages[0]!.element('x509')!.attrs.serialNumber;
    const before = await serial(client);
    await ok(client, '<SMIMELock/>');
    await fails(client, '<SMIMESet mode="new" password="other"/>', /has an S\/MIME key already: unlock it first/);
    const pfx = outsider(address, 'replacer').pfx.toString('base64');
    await fails(client, `<SMIMESet mode="add" password="p" filePassword="file-pass"><PFX><base64>${pfx}</base64></PFX></SMIMESet>`, /has an S\/MIME key already/);
    assert.equal(await serial(client), before, 'the key is the same');
    // The old password still unlocks it: nothing was overwritten.
    await ok(client, '<SMIMEUnlock password="smime-pass"/>');
    await ok(client, '<SMIMESet mode="new" password="second-pass"/>');
    const second = await serial(client);
    assert.notEqual(second, before);
    await ok(client, '<SMIMELock/>');
    await fails(client, '<SMIMEUnlock password="smime-pass"/>', /wrong S\/MIME password/);
    await ok(client, '<SMIMEUnlock password="second-pass"/>');
    // Two sessions with the key unlocked replace it at once: exactly one succeeds.
    const other = await server.login(address, 'secret');
    await ok(other.client, '<SMIMEUnlock password="second-pass"/>');
    const results = await Promise.all([client.request('<SMIMESet mode="new" password="race-a"/>'), other.client.request('<SMIMESet mode="new" password="race-b"/>')]);
    const errors = results.map((r) => r.response.attrs.errorText);
    assert.equal(errors.filter((e) => e === undefined).length, 1, `one of the two wins: ${JSON.stringify(errors)}`);
    assert.match(errors.find((e) => e !== undefined) ?? '', /changed meanwhile|has an S\/MIME key already/);
    const winner = errors[0] === undefined ? 'race-a' : 'race-b';
    const third = await server.login(address, 'secret');
    await ok(third.client, `<SMIMEUnlock password="${winner}"/>`);
  });

  test('wrong-password limit: concurrent guesses cannot pass it; it is shared by every node (the store), not kept per process', async () => {
    const { address, client } = await withKey('guess');
    await ok(client, '<SMIMELock/>');
    const other = await server.login(address, 'secret');
    const guesses = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? client : other.client).request(`<SMIMEUnlock password="guess-${i}"/>`)));
    const texts = guesses.map((g) => g.response.attrs.errorText ?? '');
    const wrong = texts.filter((t) => /^wrong S\/MIME password$/.test(t)).length;
    const refused = texts.filter((t) => /too many wrong S\/MIME passwords/.test(t)).length;
    assert.equal(wrong + refused, 10, JSON.stringify(texts));
    assert.ok(wrong <= 4, `at most maxUnlockFailures (4) were checked: ${wrong}`);
    await fails(client, '<SMIMEUnlock password="smime-pass"/>', /too many wrong/);

    // Two services over the same store, as two nodes: the failures on one are seen by the other.
    const account = (await server.services.accounts.find((await withKey('nodes')).address))!;
    const limits = { ...server.config.smime, maxUnlockFailures: 2 };
    const nodeA = new SmimeService(server.services.store, limits, silentLogger);
    const nodeB = new SmimeService(server.services.store, limits, silentLogger);
    await assert.rejects(nodeA.unlock(account, 'bad-1'), /wrong S\/MIME password/);
    await assert.rejects(nodeA.unlock(account, 'bad-2'), /wrong S\/MIME password/);
    await assert.rejects(nodeB.unlock(account, 'smime-pass'), /too many wrong/, 'node B sees node A\'s failures');
  });

  test('CertAndKey.pfx flood: clear refusals (429 or 503) past the per-session limit; the server keeps answering others', async () => {
    const { urlID } = await withKey('flood');
    const bystander = await server.login(await server.newAccount('bystander'), 'secret');
    const statuses = await Promise.all(
      Array.from({ length: 12 }, async () => {
        const response = await fetch(`http://127.0.0.1:${server.ports.http}/Session/${urlID}/CertAndKey.pfx?PFXPassword=f`);
        await response.arrayBuffer();
        return response.status;
      }),
    );
    assert.ok(statuses.every((s) => s === 200 || s === 429 || s === 503), JSON.stringify(statuses));
    assert.ok(statuses.filter((s) => s === 200).length <= 3, `at most pfxExportsPerHour (3) exported: ${JSON.stringify(statuses)}`);
    assert.ok(statuses.filter((s) => s === 429).length >= 9, JSON.stringify(statuses));
    await ok(bystander.client, '<noop/>');
    const refused = await httpRequest(server.ports.http, `/Session/${urlID}/CertAndKey.pfx?PFXPassword=f`);
    assert.equal(refused.status, 429);
    assert.match(refused.text, /too many S\/MIME key exports/);
  });

  test('messageCopy encrypt: more messages than smime.maxConvertMessages are refused, nothing copied; up to it, all are', async () => {
    const me = await withKey('bulk');
    await openInbox(me.client);
    const uids = await deliverRaw(server, me.address, 'INBOX', [1, 2, 3, 4].map((n) => Buffer.from(`From: a@remote.test\r\nSubject: n${n}\r\n\r\nbody ${n}\r\n`)));
    const list = (u: readonly number[]) => u.map((n) => `<UID>${n}</UID>`).join('');
    await fails(me.client, `<messageCopy folder="INBOX" targetMailbox="Bulk" mailboxClass="" encrypt="yes">${list(uids)}</messageCopy>`, /too many messages to encrypt at once \(at most 3\)/);
    assert.equal((await storedMessages(server, me.address, 'Bulk').catch(() => [])).length, 0);
    await ok(me.client, `<messageCopy folder="INBOX" targetMailbox="Bulk" mailboxClass="" encrypt="yes" report="uid">${list(uids.slice(0, 3))}</messageCopy>`);
    const copied = await storedMessages(server, me.address, 'Bulk');
    assert.equal(copied.length, 3);
    for (const m of copied) assert.match(m.raw.toString('latin1'), /enveloped-data/);
    // Decrypting them with one that is not for this key among them: an error, and no copy stays.
    const foreign = openssl(['smime', '-encrypt', '-aes256', '-in', file('bulk-f.txt', 'Content-Type: text/plain\r\n\r\nx\r\n'), '-subject', 'foreign', outsider('bulk@remote.test', 'BulkOther').cert]);
    const [foreignUid] = await deliverRaw(server, me.address, 'Bulk', [foreign]);
    await ok(me.client, '<folderOpen folder="Bulk" mailbox="Bulk"><field>UID</field></folderOpen>');
    await fails(me.client, `<messageCopy folder="Bulk" targetMailbox="Clear" mailboxClass="" decrypt="yes">${list([copied[0]!.uid, copied[1]!.uid, foreignUid!])}</messageCopy>`, /not encrypted for this account/);
    assert.equal((await storedMessages(server, me.address, 'Clear').catch(() => [])).length, 0, 'the copies made before the error are removed');
  });

  test('encrypt with Bcc: the To/Cc copy names no Bcc recipient; each Bcc recipient gets a copy of its own (with the sender), same Message-ID', async () => {
    const alice = await withKey('alice-bcc');
    const bob = await withKey('bob-bcc', 'bob-pass');
    const carol = await withKey('carol-bcc', 'carol-pass');
    const dave = await withKey('dave-bcc', 'dave-pass');
    // A Bcc recipient without a certificate: nothing is sent at all.
    const nokey = await server.newAccount('nokey-bcc');
    await fails(
      alice.client,
      `<messageSubmit><EMail encrypt="yes"><To>${bob.address}</To><Bcc>${nokey}</Bcc><MIME type="text" subtype="plain">x</MIME></EMail></messageSubmit>`,
      new RegExp(`no S/MIME certificate for ${nokey}`),
    );
    await ok(
      alice.client,
      `<messageSubmit targetMailbox="Sent" mailboxClass=""><EMail encrypt="yes"><Subject>Hidden</Subject><To>${bob.address}</To><Bcc>${carol.address}</Bcc><Bcc>${dave.address}</Bcc>` +
        `<EMail><Subject>Inner</Subject><MIME type="text" subtype="plain">for all three&#x0A;</MIME></EMail></EMail></messageSubmit>`,
    );
    const arrived = async (address: string) =>
      (await eventually(async () => {
        const messages = await storedMessages(server, address, 'INBOX');
        return messages.length > 0 ? messages : undefined;
      }, `the message in ${address}`))[0]!.raw;
    const recipientsOf = (raw: Buffer, name: string) => openssl(['cms', '-cmsout', '-print', '-in', file(`${name}.eml`, raw)]).toString();
    const toBob = await arrived(bob.address);
    assert.equal((await storedMessages(server, bob.address, 'INBOX')).length, 1, 'bob got one message (no copy in place of a Bcc)');
    const bobSees = recipientsOf(toBob, 'bcc-bob');
    assert.ok(bobSees.includes(`emailAddress=${bob.address}`) && bobSees.includes(`emailAddress=${alice.address}`));
    assert.ok(!bobSees.includes(carol.address) && !bobSees.includes(dave.address), 'no Bcc recipient is named in the To copy');
    assert.doesNotMatch(toBob.toString('latin1'), /^Bcc:/im);
    for (const [who, other] of [[carol, dave], [dave, carol]] as const) {
      const raw = await arrived(who.address);
      const sees = recipientsOf(raw, `bcc-${who.address}`);
      assert.ok(sees.includes(`emailAddress=${who.address}`) && sees.includes(`emailAddress=${alice.address}`));
      assert.ok(!sees.includes(bob.address) && !sees.includes(other.address), `${who.address}'s copy names only them and the sender`);
      assert.doesNotMatch(raw.toString('latin1'), /^Bcc:/im);
      const messageId = (r: Buffer) => /^Message-ID: *(.*)$/im.exec(r.toString('latin1'))?.[1]?.trim();
      assert.equal(messageId(raw), messageId(toBob), 'the same Message-ID');
      await ok(who.client, `<SMIMEUnlock password="${who === carol ? 'carol-pass' : 'dave-pass'}"/>`);
      await openInbox(who.client);
      const [stored] = await storedMessages(server, who.address, 'INBOX');
      const inner = (await readMessage(who.client, stored!.uid)).element('MIME')!.element('EMail')!;
      assert.equal(inner.element('MIME')!.text(), 'for all three\n');
    }
    // The sender's copy keeps the Bcc field (as for any message) and is readable by the sender.
    const [sent] = await storedMessages(server, alice.address, 'Sent');
    assert.match(sent!.raw.toString('latin1'), /^Bcc:/im);
    // A hidden Envelope-To is a Bcc too.
    const erin = await withKey('erin-bcc');
    await ok(alice.client, `<messageSubmit><Envelope-To>${bob.address}</Envelope-To><Envelope-To>${erin.address}</Envelope-To><EMail encrypt="yes"><To>${bob.address}</To><MIME type="text" subtype="plain">y</MIME></EMail></messageSubmit>`);
    const toErin = await arrived(erin.address);
    assert.ok(!recipientsOf(toErin, 'bcc-erin').includes(bob.address));
    const bobSecond = await eventually(async () => {
      const messages = await storedMessages(server, bob.address, 'INBOX');
      return messages.length > 1 ? messages[1] : undefined;
    }, 'the second message for bob');
    assert.ok(!recipientsOf(bobSecond.raw, 'bcc-bob2').includes(erin.address));
  });
});
