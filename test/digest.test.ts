/**
 * HTTP Digest for SIP: the credentials accounts keep (made at creation and at a password
 * change, kept at a clear-text login for an account made before), and DigestAuthenticator's
 * challenges and verdicts (src/services/digest.ts).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { DigestAuthenticator, expectedResponse, NonceCounts, type DigestOutcome } from '../src/services/digest.js';
import { digestCredentials, digestHa1, storedDigestCredentials, type DigestHash } from '../src/services/passwords.js';
import { startTestServer, type TestServer } from './helpers.js';

const SECRET = Buffer.from('a test secret of thirty-two bytes');
const REALM = 'voice.example.test';
const T0 = Date.UTC(2026, 11, 7, 8, 0, 0);

/** A clock the tests move by hand. */
function clock(start = T0): { now: () => number; advance: (ms: number) => void } {
  let time = start;
  return { now: () => time, advance: (ms) => (time += ms) };
}

/** The parameters of one challenge header value (quoted or not; enough for what challenge() writes). */
function challengeParams(header: string): Record<string, string> {
  assert.match(header, /^Digest /);
  const params: Record<string, string> = {};
  for (const m of header.slice('Digest '.length).matchAll(/([a-z]+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]+))/g)) {
    params[m[1]!] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]!;
  }
  return params;
}

const NODE_HASH: Record<DigestHash, string> = { MD5: 'md5', 'SHA-256': 'sha256' };

function h(hash: DigestHash, data: string): string {
  return createHash(NODE_HASH[hash]).update(data).digest('hex');
}

/**
 * What a phone answers to `header` (written here from RFC 7616 3.4.1 on its own, not through
 * expectedResponse, so that the round trips check the server against a separate client).
 */
function answer(
  header: string,
  user: string,
  password: string,
  options: { method?: string; uri?: string; nc?: number; qop?: boolean; cnonce?: string } = {},
): Record<string, string> {
  const c = challengeParams(header);
  const hash = c.algorithm as DigestHash;
  const method = options.method ?? 'REGISTER';
  const uri = options.uri ?? `sip:${c.realm}`;
  const ha1 = h(hash, `${user}:${c.realm}:${password}`);
  const ha2 = h(hash, `${method}:${uri}`);
  const base = { username: user, realm: c.realm!, nonce: c.nonce!, uri, algorithm: hash, opaque: c.opaque! };
  if (options.qop === false) return { ...base, response: h(hash, `${ha1}:${c.nonce}:${ha2}`) };
  const nc = (options.nc ?? 1).toString(16).padStart(8, '0');
  const cnonce = options.cnonce ?? 'phone-cnonce-1';
  return { ...base, qop: 'auth', nc, cnonce, response: h(hash, `${ha1}:${c.nonce}:${nc}:${cnonce}:auth:${ha2}`) };
}

function refusedFor(outcome: DigestOutcome): string | undefined {
  return outcome.outcome === 'refused' ? outcome.reason : undefined;
}

describe('Digest credentials of the accounts', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.stop());

  test('made at account creation: the realm is the domain, the user name the account name', async () => {
    const address = await server.newAccount('sipuser', { password: 'first pw', domain: 'sip.example.test' });
    const account = (await server.services.accounts.find(address))!;
    assert.equal(account.digestCredentials, digestCredentials(account.name, 'sip.example.test', 'first pw'));
    const stored = storedDigestCredentials(account.digestCredentials)!;
    assert.equal(stored.realm, 'sip.example.test');
    assert.equal(stored.ha1.MD5, digestHa1('MD5', account.name, 'sip.example.test', 'first pw'));
    assert.match(stored.ha1['SHA-256'], /^[0-9a-f]{64}$/);
  });

  test('made again at every password change', async () => {
    const address = await server.newAccount('sipuser', { password: 'old pw' });
    const account = (await server.services.accounts.find(address))!;
    await server.services.accounts.setPassword(account, 'new pw');
    const changed = (await server.services.accounts.find(address))!;
    assert.equal(changed.digestCredentials, digestCredentials(account.name, account.domain, 'new pw'));
    assert.notEqual(changed.digestCredentials, account.digestCredentials);
  });

  test('kept at a clear-text login for an account made before they were (with its SCRAM verifiers)', async () => {
    const address = await server.newAccount('older', { password: 'older pw' });
    const made = (await server.services.accounts.find(address))!;
    // As an account made before SCRAM verifiers and Digest credentials were kept.
    await server.services.store.accounts.setPassword(made.id, made.passwordHash, made.cramMd5Context, null, null);
    const older = (await server.services.accounts.find(address))!;
    assert.equal(older.digestCredentials, null);
    assert.equal(older.scramCredentials, null);

    await assert.rejects(server.services.auth.checkPassword(address, 'wrong pw', undefined, '127.0.0.1'));
    assert.equal((await server.services.accounts.find(address))!.digestCredentials, null, 'not from a wrong password');

    await server.services.auth.checkPassword(address, 'older pw', undefined, '127.0.0.1');
    const kept = (await server.services.accounts.find(address))!;
    assert.equal(kept.digestCredentials, digestCredentials(older.name, older.domain, 'older pw'));
    assert.ok(kept.scramCredentials, 'the SCRAM verifiers are kept in the same place');
    assert.equal(kept.credentialsVersion, older.credentialsVersion, 'keeping them is not a password change');
  });

  test('an account that has them keeps them as they are at a login', async () => {
    const address = await server.newAccount('current', { password: 'pw now' });
    const before = (await server.services.accounts.find(address))!;
    await server.services.auth.checkPassword(address, 'pw now', undefined, '127.0.0.1');
    const after = (await server.services.accounts.find(address))!;
    assert.equal(after.digestCredentials, before.digestCredentials);
    assert.equal(after.scramCredentials, before.scramCredentials);
  });

  test('stored credentials that are not ours are read as none', () => {
    for (const bad of [null, '', 'not json', '{}', '{"realm":"r"}', '{"realm":"r","ha1":{"MD5":"zz","SHA-256":"00"}}', '{"realm":1,"ha1":{}}']) {
      assert.equal(storedDigestCredentials(bad), undefined, String(bad));
    }
  });
});

describe('Digest responses: fixed vectors', () => {
  // Computed outside Node with Python's hashlib, e.g. for the MD5 HA1:
  //   python3 -c 'import hashlib; print(hashlib.md5(b"carol:voice.example.test:Tr0mbone!").hexdigest())'
  // and likewise (hashlib.new(a, s.encode()).hexdigest(), a = "md5" or "sha256") for HA2 =
  // H("REGISTER:sip:voice.example.test") and the responses H(HA1:nonce:nc:cnonce:auth:HA2),
  // H(HA1:nonce:HA2), and for -sess with HA1 replaced by H(HA1:nonce:cnonce). The values
  // are ours (RFC 7616 3.4 gave the formulas only).
  const user = 'carol';
  const password = 'Tr0mbone!';
  const nonce = 'bXktZml4ZWQtbm9uY2U';
  const call = { nonce, method: 'REGISTER', uri: `sip:${REALM}` };
  const qop = { nc: '0000002a', cnonce: 'c7e1d2a9' };
  const vectors: Record<DigestHash, { ha1: string; qop: string; noQop: string; sess: string }> = {
    MD5: {
      ha1: '7b9114f8ad8a4c93d4383c2edfa9fe62',
      qop: '9a8c28dda9b841d8a336c05146e955e9',
      noQop: '6568345a413bbff0caaa92258b59ad9f',
      sess: '12d59492ce736482b9dfd7f1834beebf',
    },
    'SHA-256': {
      ha1: 'd537de9457f1793ce4a6a4a6845bb4a94117db4ca68d8e26adb019b34ecf9d1a',
      qop: 'd852602672d47607b4d0063f47dcddcf666187681e5964abd0188aa98f010872',
      noQop: '8a28f3aadbfa43f2f3e3862b2cae7fe4a21749273349ce1c4925f2a3bb1270ab',
      sess: 'aabec7acc7c56792e10fbd116ca1fb9989e8203c5edc9fdfd6103822004d6846',
    },
  };

  for (const hash of ['MD5', 'SHA-256'] as const) {
    test(`${hash}: HA1, and the responses with qop=auth, without qop, and -sess`, () => {
      const v = vectors[hash];
      assert.equal(digestHa1(hash, user, REALM, password), v.ha1);
      assert.equal(storedDigestCredentials(digestCredentials(user, REALM, password))!.ha1[hash], v.ha1);
      assert.equal(expectedResponse({ hash, ha1: v.ha1, session: false, ...call, qop }), v.qop);
      assert.equal(expectedResponse({ hash, ha1: v.ha1, session: false, ...call, qop: undefined }), v.noQop);
      assert.equal(expectedResponse({ hash, ha1: v.ha1, session: true, ...call, qop }), v.sess);
    });
  }
});

describe('DigestAuthenticator', () => {
  const user = 'dave';
  const password = 'phone secret';
  const credentials = digestCredentials(user, REALM, password);

  test('challenges: one per algorithm, SHA-256 first, sharing a nonce, qop="auth", stale on demand', () => {
    const digest = new DigestAuthenticator(SECRET);
    const headers = digest.challenge(REALM);
    assert.equal(headers.length, 2);
    const [sha, md5] = headers.map(challengeParams) as [Record<string, string>, Record<string, string>];
    assert.equal(sha.algorithm, 'SHA-256');
    assert.equal(md5.algorithm, 'MD5');
    for (const c of [sha, md5]) {
      assert.equal(c.realm, REALM);
      assert.equal(c.qop, 'auth');
      assert.match(c.nonce!, /^[A-Za-z0-9_-]{48}$/);
      assert.ok(c.opaque);
      assert.equal(c.stale, undefined);
    }
    assert.equal(sha.nonce, md5.nonce);
    assert.notEqual(digest.challenge(REALM)[0], headers[0], 'a fresh nonce every time');
    assert.match(digest.challenge(REALM, { stale: true })[1]!, /, stale=true$/);
    assert.deepEqual(new DigestAuthenticator(SECRET, { algorithms: ['MD5'] }).challenge(REALM).map((c) => challengeParams(c).algorithm), ['MD5']);
    assert.equal(challengeParams(digest.challenge('odd "realm"\\')[0]!).realm, 'odd "realm"\\', 'the realm is quoted');
  });

  for (const [index, hash] of [[0, 'SHA-256'], [1, 'MD5']] as const) {
    test(`${hash} round trips: qop=auth with a rising nc, and RFC 2069's form without qop`, () => {
      const digest = new DigestAuthenticator(SECRET);
      const header = digest.challenge(REALM)[index]!;
      assert.deepEqual(digest.verify(answer(header, user, password), 'REGISTER', credentials), { outcome: 'ok' });
      assert.deepEqual(digest.verify(answer(header, user, password, { nc: 2, method: 'INVITE', uri: 'sip:bob@voice.example.test' }), 'INVITE', credentials), {
        outcome: 'ok',
      });
      assert.deepEqual(digest.verify(answer(header, user, password, { qop: false }), 'REGISTER', credentials), { outcome: 'ok' });
    });
  }

  test('parameter names and the algorithm are read case-insensitively; a missing algorithm is MD5', () => {
    const digest = new DigestAuthenticator(SECRET);
    const [sha, md5] = digest.challenge(REALM) as [string, string];
    const upper = Object.fromEntries(Object.entries(answer(sha, user, password)).map(([k, v]) => [k.toUpperCase(), k === 'algorithm' ? 'sha-256' : v]));
    assert.deepEqual(digest.verify(upper, 'REGISTER', credentials), { outcome: 'ok' });
    // The two challenges share their nonce, hence its count.
    const { algorithm: _, ...withoutAlgorithm } = answer(md5, user, password, { nc: 2 });
    assert.deepEqual(digest.verify(withoutAlgorithm, 'REGISTER', credentials), { outcome: 'ok' });
  });

  test('-sess variants: accepted with qop=auth when the base algorithm is offered, refused without qop', () => {
    const digest = new DigestAuthenticator(SECRET);
    const c = challengeParams(digest.challenge(REALM)[0]!);
    const stored = storedDigestCredentials(credentials)!;
    const qop = { nc: '00000001', cnonce: 'sess-cnonce' };
    const uri = `sip:${REALM}`;
    const response = expectedResponse({ hash: 'SHA-256', ha1: stored.ha1['SHA-256'], session: true, nonce: c.nonce!, method: 'REGISTER', uri, qop });
    const params = { username: user, realm: REALM, nonce: c.nonce!, uri, algorithm: 'SHA-256-sess', qop: 'auth', ...qop, response };
    assert.deepEqual(digest.verify(params, 'REGISTER', credentials), { outcome: 'ok' });
    const { qop: _q, nc: _n, cnonce: _c, ...withoutQop } = params;
    assert.equal(refusedFor(digest.verify(withoutQop, 'REGISTER', credentials)), 'qop');
  });

  test('an expired nonce with a right answer is stale; with a wrong one, refused', () => {
    const time = clock();
    const digest = new DigestAuthenticator(SECRET, { nonceLifetimeSeconds: 300, now: time.now });
    const header = digest.challenge(REALM)[0]!;
    time.advance(299_000);
    assert.deepEqual(digest.verify(answer(header, user, password), 'REGISTER', credentials), { outcome: 'ok' });
    time.advance(2_000);
    assert.deepEqual(digest.verify(answer(header, user, password, { nc: 2 }), 'REGISTER', credentials), { outcome: 'stale' });
    assert.equal(refusedFor(digest.verify(answer(header, user, 'guess', { nc: 3 }), 'REGISTER', credentials)), 'wrong-response');
  });

  test('a nonce from the future (beyond clock skew between nodes) is refused', () => {
    const time = clock(T0 + 120_000);
    const ahead = new DigestAuthenticator(SECRET, { now: time.now });
    const header = ahead.challenge(REALM)[0]!;
    const behind = new DigestAuthenticator(SECRET, { now: () => T0 });
    assert.equal(refusedFor(behind.verify(answer(header, user, password), 'REGISTER', credentials)), 'nonce');
  });

  test('a nonce made by another node sharing the secret is accepted; one from another secret is not', () => {
    const header = new DigestAuthenticator(SECRET).challenge(REALM)[0]!;
    assert.deepEqual(new DigestAuthenticator(SECRET).verify(answer(header, user, password), 'REGISTER', credentials), { outcome: 'ok' });
    const other = new DigestAuthenticator(Buffer.from('another secret, also long enough'));
    assert.equal(refusedFor(other.verify(answer(header, user, password), 'REGISTER', credentials)), 'nonce');
  });

  test('forged nonces are refused: a changed time, a changed byte, a bad length, a nonce of another realm', () => {
    const digest = new DigestAuthenticator(SECRET);
    const header = digest.challenge(REALM)[0]!;
    const good = answer(header, user, password);
    const bytes = Buffer.from(good.nonce!, 'base64url');
    const later = Buffer.from(bytes);
    later.writeBigUInt64BE(later.readBigUInt64BE() + 1_000_000n);
    const flipped = Buffer.from(bytes);
    flipped[15]! ^= 1;
    for (const nonce of [later.toString('base64url'), flipped.toString('base64url'), good.nonce!.slice(1), `${good.nonce}AAAA`, 'x'.repeat(48)]) {
      assert.equal(refusedFor(digest.verify({ ...good, nonce }, 'REGISTER', credentials)), 'nonce', nonce);
    }
    // A nonce made for one realm does not serve another, even for credentials of that realm.
    const elsewhere = digestCredentials(user, 'other.example.test', password);
    const moved = answer(header.replace(`realm="${REALM}"`, 'realm="other.example.test"'), user, password);
    assert.equal(refusedFor(digest.verify(moved, 'REGISTER', elsewhere)), 'nonce');
  });

  test('a wrong password, a wrong realm, another method or URI than answered for', () => {
    const digest = new DigestAuthenticator(SECRET);
    const header = digest.challenge(REALM)[0]!;
    assert.equal(refusedFor(digest.verify(answer(header, user, 'not it'), 'REGISTER', credentials)), 'wrong-response');
    assert.equal(refusedFor(digest.verify(answer(header, user, password, { nc: 2 }), 'INVITE', credentials)), 'wrong-response');
    const otherRealm = digestCredentials(user, 'other.example.test', password);
    assert.equal(refusedFor(digest.verify(answer(header, user, password, { nc: 3 }), 'REGISTER', otherRealm)), 'realm');
    assert.equal(refusedFor(digest.verify(answer(header, 'eve', password, { nc: 4 }), 'REGISTER', credentials)), 'wrong-response');
    assert.deepEqual(digest.verify(answer(header, user, password, { nc: 5 }), 'REGISTER', credentials), { outcome: 'ok' });
  });

  test('a replayed or lower nonce count is refused; a wrong answer does not move the count', () => {
    const digest = new DigestAuthenticator(SECRET);
    const header = digest.challenge(REALM)[0]!;
    const first = answer(header, user, password, { nc: 1 });
    assert.deepEqual(digest.verify(first, 'REGISTER', credentials), { outcome: 'ok' });
    assert.equal(refusedFor(digest.verify(first, 'REGISTER', credentials)), 'replay');
    assert.equal(refusedFor(digest.verify(answer(header, user, 'guess', { nc: 9 }), 'REGISTER', credentials)), 'wrong-response');
    assert.deepEqual(digest.verify(answer(header, user, password, { nc: 3 }), 'REGISTER', credentials), { outcome: 'ok' });
    assert.equal(refusedFor(digest.verify(answer(header, user, password, { nc: 2 }), 'REGISTER', credentials)), 'replay');
    assert.deepEqual(digest.verify(answer(header, user, password, { nc: 4 }), 'REGISTER', credentials), { outcome: 'ok' });
  });

  test('the nonce counts are bounded: the least recently used nonce is forgotten first', () => {
    const counts = new NonceCounts(2);
    assert.equal(counts.advance('a', 1), true);
    assert.equal(counts.advance('b', 1), true);
    assert.equal(counts.advance('a', 2), true, 'a is now the most recent');
    assert.equal(counts.advance('c', 1), true);
    assert.equal(counts.size, 2);
    assert.equal(counts.advance('a', 2), false, 'a is remembered');
    assert.equal(counts.advance('b', 1), true, 'b was forgotten');
  });

  test('bad input is refused, never thrown', () => {
    const digest = new DigestAuthenticator(SECRET);
    const header = digest.challenge(REALM)[0]!;
    const good = answer(header, user, password);
    const cases: [string, Record<string, string>, string | null | undefined, string][] = [
      ['no parameters', {}, credentials, 'malformed'],
      ['no response', { ...good, response: '' }, credentials, 'malformed'],
      ['no uri', Object.fromEntries(Object.entries(good).filter(([k]) => k !== 'uri')), credentials, 'malformed'],
      ['an odd-length response', { ...good, response: good.response!.slice(1) }, credentials, 'malformed'],
      ['a non-hex response', { ...good, response: 'z'.repeat(64) }, credentials, 'malformed'],
      ['an MD5-length response for SHA-256', { ...good, response: good.response!.slice(0, 32) }, credentials, 'malformed'],
      ['an unknown algorithm', { ...good, algorithm: 'SHA-512-256' }, credentials, 'algorithm'],
      ['qop=auth-int', { ...good, qop: 'auth-int' }, credentials, 'qop'],
      ['qop without cnonce', { ...good, cnonce: '' }, credentials, 'malformed'],
      ['a short nc', { ...good, nc: '1' }, credentials, 'malformed'],
      ['a non-hex nc', { ...good, nc: '0000000g' }, credentials, 'malformed'],
      ['a zero nc', { ...good, nc: '00000000' }, credentials, 'malformed'],
      ['nc without qop', Object.fromEntries(Object.entries(good).filter(([k]) => k !== 'qop')), credentials, 'malformed'],
      ['another opaque', { ...good, opaque: 'not ours' }, credentials, 'opaque'],
      ['a huge value', { ...good, uri: 'x'.repeat(5000) }, credentials, 'malformed'],
      ['no credentials', good, null, 'no-credentials'],
      ['unreadable credentials', good, '{not json', 'no-credentials'],
      ['a value that is not a string', { ...good, nc: 7 as unknown as string }, credentials, 'malformed'],
    ];
    for (const [what, params, stored, reason] of cases) {
      let outcome: DigestOutcome | undefined;
      assert.doesNotThrow(() => (outcome = digest.verify(params, 'REGISTER', stored)), what);
      assert.equal(refusedFor(outcome!), reason, what);
      if (outcome?.outcome === 'refused') assert.ok(!outcome.detail.includes(password), 'the detail tells no secret');
    }
    // MD5 is refused when only SHA-256 is offered.
    const shaOnly = new DigestAuthenticator(SECRET, { algorithms: ['SHA-256'] });
    const md5 = answer(new DigestAuthenticator(SECRET).challenge(REALM)[1]!, user, password);
    assert.equal(refusedFor(shaOnly.verify(md5, 'REGISTER', credentials)), 'algorithm');
    assert.throws(() => new DigestAuthenticator(Buffer.alloc(4)), /at least 16 bytes/);
  });
});
