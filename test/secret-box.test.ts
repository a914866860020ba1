import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadSecretBox, SecretBox, SecretBoxError } from '../src/services/secret-box.js';

describe('secret box', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ximssd-secret-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('makes a private key file once and opens what it sealed', () => {
    const file = join(dir, 'keys', 'secret.key');
    const box = loadSecretBox(file);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const again = loadSecretBox(file);
    assert.equal(again.keyId, box.keyId);
    const sealed = box.seal('pässword', 'rpop:1');
    assert.doesNotMatch(sealed, /pässword/);
    assert.equal(again.open(sealed, 'rpop:1'), 'pässword');
    assert.notEqual(box.seal('pässword', 'rpop:1'), sealed, 'a fresh nonce each time');
    assert.match(readFileSync(file, 'utf8'), /^[0-9a-f]{64}\n$/);
  });

  it('refuses another record, another key and damage', () => {
    const box = new SecretBox(Buffer.alloc(32, 1));
    const sealed = box.seal('x', 'a');
    assert.throws(() => box.open(sealed, 'b'), SecretBoxError);
    assert.throws(() => new SecretBox(Buffer.alloc(32, 2)).open(sealed, 'a'), /another secret key/);
    const damaged = sealed.slice(0, -4) + (sealed.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    assert.throws(() => box.open(damaged, 'a'), SecretBoxError);
    assert.throws(() => box.open('plain', 'a'), /not a sealed secret/);
    assert.throws(() => new SecretBox(Buffer.alloc(16)), SecretBoxError);
  });
});
