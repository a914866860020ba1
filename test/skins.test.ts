/**
 * Skins and the other service helpers (issue 17): skinList, skinFileList, skinFileRead,
 * readConfigFile and bannerRead, over TCP against a server whose server-wide and domain skin
 * directories are temporary ones laid out here (with the built-in skin of resources/skins/
 * under them).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseSettingAssignments } from '../src/services/settings.js';
import type { XmlElement } from '../src/xml/element.js';
import { capturingLogger, fails, ok, startTestServer, type TestServer, type XimssClient, XimssClient as Client } from './helpers.js';

const TIME = /^\d{8}T\d{6}$/;
const MAX_FILE_BYTES = 16 * 1024;
/** Bytes no UTF-8 text has (NUL, 0xFF): the "binary" file. */
const LOGO = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x00, 0xff, 0x10, 0x80, 0x00, 0x01]);

let server: TestServer;
let root: string;
let serverSkins: string;
let domainSkins: string;
let outside: string;
const logged = capturingLogger('info');

function write(path: string, data: string | Buffer): void {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, data);
}

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'ximssd-skins-'));
  serverSkins = join(root, 'server');
  domainSkins = join(root, 'domains');
  outside = join(root, 'outside');
  // Outside every skin directory: what the escapes below try to reach.
  write(join(outside, 'secret.txt'), 'the secret');
  write(join(outside, 'dir', 'secret.txt'), 'the secret');
  // The server-wide level: the unnamed skin and a named one.
  write(join(serverSkins, 'welcome.txt'), 'server welcome');
  write(join(serverSkins, 'logo.png'), LOGO);
  write(join(serverSkins, 'big.bin'), Buffer.alloc(MAX_FILE_BYTES + 1, 0x41));
  write(join(serverSkins, 'exact.txt'), Buffer.alloc(MAX_FILE_BYTES, 0x42));
  write(join(serverSkins, 'empty.txt'), '');
  write(join(serverSkins, 'Client.xml'), '<config><subKey key="theme">dark</subKey></config>');
  write(join(serverSkins, 'Broken.xml'), '<config><unclosed></config>');
  write(join(serverSkins, 'Blue', 'style.css'), 'body { color: blue }');
  write(join(serverSkins, 'Blue', 'welcome.txt'), 'blue welcome');
  write(join(serverSkins, '.hidden', 'x.txt'), 'hidden skin');
  write(join(serverSkins, '.secret.txt'), 'hidden file');
  symlinkSync(join(outside, 'secret.txt'), join(serverSkins, 'escape.txt'));
  symlinkSync(join(outside, 'dir'), join(serverSkins, 'Evil'));
  symlinkSync('welcome.txt', join(serverSkins, 'alias.txt'));
  symlinkSync('loop-b.txt', join(serverSkins, 'loop-a.txt'));
  symlinkSync('loop-a.txt', join(serverSkins, 'loop-b.txt'));
  execFileSync('mkfifo', [join(serverSkins, 'pipe.txt')]);
  // Domain levels: example.test has its own unnamed and Blue files, other.test its own welcome.
  write(join(domainSkins, 'example.test', 'welcome.txt'), 'domain welcome');
  write(join(domainSkins, 'example.test', 'Blue', 'extra.txt'), 'blue extra');
  write(join(domainSkins, 'other.test', 'welcome.txt'), 'other welcome');
  // A fixed modification time, to check timeModified (in the session's time zone).
  utimesSync(join(serverSkins, 'Blue', 'style.css'), new Date('2024-03-01T10:20:30Z'), new Date('2024-03-01T10:20:30Z'));
  server = await startTestServer({ skins: { directory: serverSkins, domainDirectory: domainSkins, maxFileBytes: MAX_FILE_BYTES } }, { log: logged.log });
});
after(async () => {
  await server?.stop();
  rmSync(root, { recursive: true, force: true });
});

async function user(domain = 'example.test'): Promise<XimssClient> {
  const address = await server.newAccount('skin', { domain });
  return (await server.login(address, 'secret')).client;
}

function only(messages: XmlElement[], name: string): XmlElement {
  assert.equal(messages.length, 1, `one ${name}: ${messages.join('')}`);
  assert.equal(messages[0]!.name, name);
  return messages[0]!;
}

describe('skinList', () => {
  test('lists the unnamed skin and the named ones of every level, with filter; never hidden or escaping directories', async () => {
    const client = await user();
    const all = (await ok(client, '<skinList/>')).messages;
    assert.ok(all.every((m) => m.name === 'skinInfo'));
    assert.deepEqual(
      all.map((m) => m.attrs.skinName),
      ['', 'Blue'],
    );
    const blue = (await ok(client, '<skinList filter="b*"/>')).messages;
    assert.deepEqual(
      blue.map((m) => m.attrs.skinName),
      ['Blue'],
    );
    assert.equal((await ok(client, '<skinList filter="nothing*"/>')).messages.length, 0);
  });
});

describe('skinFileList', () => {
  test('the unnamed skin: the domain, server and built-in files, with size and timeModified', async () => {
    const client = await user();
    const files = (await ok(client, '<skinFileList/>')).messages;
    assert.ok(files.every((m) => m.name === 'skinFileInfo' && m.attrs.skinName === ''));
    const byName = new Map(files.map((m) => [m.attrs.fileName!, m]));
    assert.deepEqual(
      [...byName.keys()],
      ['Broken.xml', 'Client.xml', 'English.json', 'alias.txt', 'big.bin', 'empty.txt', 'exact.txt', 'logo.png', 'welcome.txt'],
    );
    // welcome.txt is the domain's (14 bytes), shadowing the server's; the built-in vocabulary is there.
    assert.equal(byName.get('welcome.txt')!.attrs.size, String('domain welcome'.length));
    assert.equal(byName.get('big.bin')!.attrs.size, String(MAX_FILE_BYTES + 1));
    assert.equal(byName.get('logo.png')!.attrs.size, String(LOGO.length));
    for (const file of files) assert.match(file.attrs.timeModified ?? '', TIME);
  });

  test('a named skin: its own files at every level first, then the unnamed ones, each with the skin it comes from', async () => {
    const client = await user();
    await ok(client, '<prefsStore><TimeZone>Europe/Berlin</TimeZone></prefsStore>');
    const files = (await ok(client, '<skinFileList skinName="Blue"/>')).messages;
    const from = Object.fromEntries(files.map((m) => [m.attrs.fileName!, m.attrs.skinName]));
    assert.equal(from['style.css'], 'Blue');
    assert.equal(from['extra.txt'], 'Blue');
    assert.equal(from['welcome.txt'], 'Blue');
    assert.equal(from['logo.png'], '');
    assert.equal(from['English.json'], '');
    const style = files.find((m) => m.attrs.fileName === 'style.css')!;
    assert.equal(style.attrs.timeModified, '20240301T112030', '10:20:30 UTC in Berlin');
    const filtered = (await ok(client, '<skinFileList skinName="Blue" filter="*.CSS"/>')).messages;
    assert.deepEqual(
      filtered.map((m) => m.attrs.fileName),
      ['style.css'],
    );
  });

  test('another domain sees its own files and not example.test\'s', async () => {
    const client = await user('other.test');
    const files = (await ok(client, '<skinFileList skinName="Blue"/>')).messages;
    assert.ok(!files.some((m) => m.attrs.fileName === 'extra.txt'));
  });

  test('an unknown, hidden or escaping skin is refused', async () => {
    const client = await user();
    await fails(client, '<skinFileList skinName="Green"/>', 'unknown skin "Green"');
    await fails(client, '<skinFileList skinName=".hidden"/>', /^invalid skin name/);
    await fails(client, '<skinFileList skinName="Evil"/>', 'unknown skin "Evil"');
    await fails(client, '<skinFileList skinName=".."/>', /^invalid skin name/);
    await fails(client, '<skinFileList skinName="../outside"/>', /^invalid skin name/);
  });
});

describe('skinFileRead', () => {
  test('text files, from the most specific level', async () => {
    const ex = await user();
    const other = await user('other.test');
    const plain = await user('plain.test');
    const read = async (client: XimssClient, request: string): Promise<XmlElement> => only((await ok(client, request)).messages, 'skinFileData');
    const domain = await read(ex, '<skinFileRead fileName="welcome.txt"/>');
    assert.equal(domain.attrs.fileName, 'welcome.txt');
    assert.match(domain.attrs.timeModified ?? '', TIME);
    assert.equal(domain.text(), 'domain welcome');
    assert.equal((await read(other, '<skinFileRead fileName="welcome.txt"/>')).text(), 'other welcome');
    assert.equal((await read(plain, '<skinFileRead fileName="welcome.txt"/>')).text(), 'server welcome');
    assert.equal((await read(ex, '<skinFileRead skinName="Blue" fileName="welcome.txt"/>')).text(), 'blue welcome');
    assert.equal((await read(ex, '<skinFileRead skinName="Blue" fileName="extra.txt"/>')).text(), 'blue extra');
    assert.equal((await read(plain, '<skinFileRead skinName="" fileName="alias.txt"/>')).text(), 'server welcome', 'a link inside the skin is followed');
    // The built-in skin holds the vocabulary readStrings serves.
    const english = JSON.parse((await read(ex, '<skinFileRead fileName="English.json"/>')).text()) as Record<string, unknown>;
    assert.ok(Object.keys(english).length > 0);
    const empty = await read(ex, '<skinFileRead fileName="empty.txt"/>');
    assert.equal(empty.children.length, 0);
    // Exactly at the limit is served.
    assert.equal((await read(ex, '<skinFileRead fileName="exact.txt"/>')).text().length, MAX_FILE_BYTES);
  });

  test('binary files as base64 with type="binary"; as text they are refused', async () => {
    const client = await user();
    const data = only((await ok(client, '<skinFileRead fileName="logo.png" type="binary"/>')).messages, 'skinFileData');
    const base64 = data.elements();
    assert.equal(base64.length, 1);
    assert.equal(base64[0]!.name, 'base64');
    assert.deepEqual(Buffer.from(base64[0]!.text(), 'base64'), LOGO);
    await fails(client, '<skinFileRead fileName="logo.png"/>', 'the file data is not text: read it with type="binary"');
    const text = only((await ok(client, '<skinFileRead fileName="welcome.txt" type="binary"/>')).messages, 'skinFileData');
    assert.equal(Buffer.from(text.elements()[0]!.text(), 'base64').toString(), 'domain welcome');
    await fails(client, '<skinFileRead fileName="logo.png" type="xml"/>', 'type must be binary or text');
  });

  test('a missing file answers "file is not found"; a missing fileName is an error', async () => {
    const client = await user();
    await fails(client, '<skinFileRead fileName="nothing.txt"/>', 'file is not found');
    await fails(client, '<skinFileRead skinName="Blue" fileName="nothing.txt"/>', 'file is not found');
    await fails(client, '<skinFileRead/>', /fileName/);
    await fails(client, '<skinFileRead skinName="Green" fileName="welcome.txt"/>', 'unknown skin "Green"');
  });

  test('paths are confined: ../, absolute, backslashes, encoded, hidden and symbolic links out are refused', async () => {
    const client = await user();
    const invalid = [
      '../outside/secret.txt',
      '..',
      '.',
      '../../../../../../etc/passwd',
      '/etc/passwd',
      `${outside}/secret.txt`,
      '..\\outside\\secret.txt',
      'Blue/../../outside/secret.txt',
      '.secret.txt',
      ' welcome.txt',
    ];
    for (const name of invalid) {
      await fails(client, `<skinFileRead fileName="${name.replace(/&/g, '&amp;').replace(/"/g, '&quot;')}"/>`, /^invalid file name/, name);
    }
    // An XML character reference decodes to ../ before the server looks at it.
    await fails(client, '<skinFileRead fileName="&#46;&#46;&#47;outside&#47;secret.txt"/>', /^invalid file name/);
    // URL encoding means nothing here: the name is taken literally, and no such file exists.
    await fails(client, '<skinFileRead fileName="%2e%2e%2foutside%2fsecret.txt"/>', 'file is not found');
    await fails(client, '<skinFileRead fileName="..%2F..%2Fetc%2Fpasswd"/>', /^invalid file name/);
    await fails(client, '<skinFileRead fileName="x%2F..%2F..%2Fetc%2Fpasswd"/>', 'file is not found');
    // A link inside the skin that leads out of it is as good as missing, and not listed.
    await fails(client, '<skinFileRead fileName="escape.txt"/>', 'file is not found');
    await fails(client, '<skinFileRead fileName="escape.txt" type="binary"/>', 'file is not found');
    await fails(client, '<skinFileRead skinName="Evil" fileName="secret.txt"/>', 'unknown skin "Evil"');
    // A loop of links and a named pipe are no files either (the pipe does not hold the request).
    await fails(client, '<skinFileRead fileName="loop-a.txt"/>', 'file is not found');
    await fails(client, '<skinFileRead fileName="pipe.txt"/>', 'file is not found');
    await fails(client, '<skinFileRead fileName="pipe.txt" type="binary"/>', 'file is not found');
    const listed = (await ok(client, '<skinFileList/>')).messages.map((m) => m.attrs.fileName);
    assert.ok(!listed.includes('escape.txt'));
    assert.ok(!listed.includes('.secret.txt'));
    assert.ok(!listed.includes('loop-a.txt') && !listed.includes('pipe.txt'));
    // Nothing of the outside file came back in any message.
    assert.ok(!client.raw.some((text) => text.includes('the secret') || text.includes('dGhlIHNlY3JldA')));
    // The operator hears of the link out and of the names refused.
    assert.ok(logged.events('skin.escape').some((r) => String(r.path).endsWith('escape.txt')));
    assert.ok(logged.events('skin.bad_name').some((r) => r.file === '../outside/secret.txt'));
  });

  test('a file over skins.maxFileBytes is refused (listed with its size)', async () => {
    const client = await user();
    await fails(client, '<skinFileRead fileName="big.bin" type="binary"/>', `the file is too large (${MAX_FILE_BYTES + 1} bytes; the limit is ${MAX_FILE_BYTES})`);
    await fails(client, '<skinFileRead fileName="big.bin"/>', /^the file is too large/);
    assert.ok(logged.events('skin.file_too_large').some((r) => r.size === MAX_FILE_BYTES + 1 && r.limit === MAX_FILE_BYTES));
  });

  test('skin operations need a session', async () => {
    const client = await Client.connect(server.ports.ximss);
    try {
      await fails(client, '<skinList/>');
      await fails(client, '<skinFileRead fileName="welcome.txt"/>');
      // The connection still works.
      assert.equal((await client.request('<readStrings/>')).messages[0]?.name, 'strings');
    } finally {
      client.close();
    }
  });
});

describe('readConfigFile', () => {
  test('reads <name>.xml of the skins as its XML element; timeModified leaves the body out when not newer', async () => {
    const client = await user();
    const config = only((await ok(client, '<readConfigFile name="Client"/>')).messages, 'configFile');
    assert.equal(config.attrs.name, 'Client');
    assert.equal(config.attrs.skinName, '');
    assert.match(config.attrs.timeModified ?? '', TIME);
    const body = config.elements();
    assert.equal(body.length, 1);
    assert.equal(body[0]!.toString(), '<config><subKey key="theme">dark</subKey></config>');
    const same = only((await ok(client, `<readConfigFile name="Client" timeModified="${config.attrs.timeModified}"/>`)).messages, 'configFile');
    assert.equal(same.children.length, 0);
    const older = only((await ok(client, '<readConfigFile name="Client" timeModified="20000101T000000"/>')).messages, 'configFile');
    assert.equal(older.elements().length, 1);
    await fails(client, '<readConfigFile name="Client" timeModified="yesterday"/>', /^timeModified must be a GMT time/);
  });

  test('missing, malformed and out-of-directory configurations', async () => {
    const client = await user();
    await fails(client, '<readConfigFile name="Nothing"/>', 'file is not found');
    await fails(client, '<readConfigFile name="Broken"/>', 'configuration Broken is not valid XML');
    await fails(client, '<readConfigFile name="../outside/secret"/>', /^invalid configuration name/);
    await fails(client, '<readConfigFile name="/etc/passwd"/>', /^invalid configuration name/);
    await fails(client, '<readConfigFile/>', /name/);
  });
});

describe('bannerRead', () => {
  async function setBanners(domain: string, value: string): Promise<void> {
    const changes = parseSettingAssignments([`Banners=${value}`], 'domain');
    await server.services.accounts.updateDomainSettings(domain, changes.settings, changes.accountDefaults);
  }

  test('per domain: the Banners setting answers a banner message; an unknown type or no setting: none', async () => {
    const ex = await user();
    const other = await user('other.test');
    const plain = await user('plain.test');
    await setBanners('example.test', JSON.stringify({ top: '<b>Example sale</b>', side: { href: 'https://example.test/', text: 'Visit' } }));
    await setBanners('other.test', JSON.stringify({ top: 'Other news' }));
    const top = only((await ok(ex, '<bannerRead type="top"/>')).messages, 'banner');
    assert.equal(top.attrs.type, 'top');
    assert.equal(top.text(), '<b>Example sale</b>');
    const side = only((await ok(ex, '<bannerRead type="side"><subKey key="page">inbox</subKey></bannerRead>')).messages, 'banner');
    assert.deepEqual(
      side.elements().map((e) => [e.attrs.key, e.text()]),
      [
        ['href', 'https://example.test/'],
        ['text', 'Visit'],
      ],
    );
    assert.equal(only((await ok(other, '<bannerRead type="top"/>')).messages, 'banner').text(), 'Other news');
    assert.equal((await ok(other, '<bannerRead type="side"/>')).messages.length, 0);
    assert.equal((await ok(plain, '<bannerRead type="top"/>')).messages.length, 0);
    await fails(ex, '<bannerRead/>', /type/);
    // Removed: no banner any more.
    await setBanners('other.test', 'default');
    assert.equal((await ok(other, '<bannerRead type="top"/>')).messages.length, 0);
  });

  test('the Banners setting accepts only a JSON object of texts', () => {
    for (const bad of ['not json', '[]', '"text"', '{"a":1}', '{"a":null}', `{"a":"${'x'.repeat(17000)}"}`, '{"":"x"}']) {
      assert.throws(() => parseSettingAssignments([`Banners=${bad}`], 'domain'), /^Error: bad value for Banners/, bad.slice(0, 40));
    }
    assert.equal(parseSettingAssignments(['Banners={ "a" : "b" }'], 'domain').settings.Banners, '{"a":"b"}');
  });
});

describe('readStrings from the server and domain skins', () => {
  const files: string[] = [];
  const put = (path: string, data: string, time?: Date): void => {
    write(path, data);
    if (time) utimesSync(path, time, time);
    files.push(path);
  };
  const NEWEST = new Date('2030-01-02T03:04:05Z');
  before(() => {
    // The server's English.json overrides one built-in string and adds one; a domain's overrides another.
    put(join(serverSkins, 'English.json'), JSON.stringify({ LoginTitle: 'Server Login', ServerOnly: ['a', 'b'] }), new Date('2029-01-01T00:00:00Z'));
    put(join(domainSkins, 'strings.test', 'English.json'), JSON.stringify({ LoginButton: 'Enter', ServerOnly: { x: 'domain' } }), NEWEST);
    // A language only the skins have: its strings over every English one, English filling its gaps.
    put(join(serverSkins, 'German.json'), JSON.stringify({ LoginButton: 'Anmelden', LoginTitle: 'Anmeldung' }));
    put(join(domainSkins, 'strings.test', 'German.json'), JSON.stringify({ LoginTitle: 'Domain-Anmeldung' }));
    // A named skin's file wins over the unnamed skin's.
    put(join(serverSkins, 'Green', 'English.json'), JSON.stringify({ LoginTitle: 'Green Login' }));
    // Not a vocabulary: ignored, logged.
    put(join(domainSkins, 'broken.test', 'English.json'), '{"LoginTitle": 42}');
  });
  after(() => {
    for (const path of files) rmSync(path, { force: true });
  });

  /** The strings of one readStrings answer, by name (strings-valued ones as JSON text). */
  async function strings(client: XimssClient, request: string): Promise<{ message: XmlElement; byName: Map<string, string> }> {
    const message = only((await ok(client, request)).messages, 'strings');
    const byName = new Map(message.elements().map((e) => [e.attrs.name!, e.name === 'string' ? e.text() : JSON.stringify(e.elements().map((c) => [c.attrs.name ?? '', c.text()]))]));
    return { message, byName };
  }

  test("before login: the server's strings over the built-in ones", async () => {
    const client = await Client.connect(server.ports.ximss);
    try {
      const { byName } = await strings(client, '<readStrings/>');
      assert.equal(byName.get('LoginTitle'), 'Server Login');
      assert.equal(byName.get('ServerOnly'), JSON.stringify([['', 'a'], ['', 'b']]));
      assert.equal(byName.get('LoginButton'), 'Log In', 'built-in');
    } finally {
      client.close();
    }
  });

  test("after login: the domain's over the server's over the built-in ones; timeModified is the newest file's", async () => {
    const client = await user('strings.test');
    const { message, byName } = await strings(client, '<readStrings/>');
    assert.equal(byName.get('LoginTitle'), 'Server Login');
    assert.equal(byName.get('LoginButton'), 'Enter');
    assert.equal(byName.get('ServerOnly'), JSON.stringify([['x', 'domain']]));
    assert.ok(byName.has('AppendModes'), 'the built-in strings are all there');
    assert.equal(message.attrs.timeModified, '20300102T030405');
    // A client whose copy is as new gets no strings.
    const again = only((await ok(client, '<readStrings timeModified="20300102T030405"/>')).messages, 'strings');
    assert.equal(again.elements().length, 0);
    // Another domain sees only the server's.
    const plain = await user('plain.test');
    assert.equal((await strings(plain, '<readStrings/>')).byName.get('LoginButton'), 'Log In');
  });

  test("a language of the skins: its strings over the English ones, the domain's over the server's; the session's Language too", async () => {
    const client = await user('strings.test');
    const { byName } = await strings(client, '<readStrings language="German"/>');
    assert.equal(byName.get('LoginTitle'), 'Domain-Anmeldung');
    assert.equal(byName.get('LoginButton'), 'Anmelden', "the server's German over the domain's English");
    assert.equal(byName.get('AppendButton'), 'Append', 'English fills the gaps');
    await ok(client, '<prefsStore><Language>German</Language></prefsStore>');
    assert.equal((await strings(client, '<readStrings/>')).byName.get('LoginTitle'), 'Domain-Anmeldung');
  });

  test('a named skin, an unknown one, and a file that is not a vocabulary', async () => {
    const client = await user('broken.test');
    assert.equal((await strings(client, '<readStrings skinName="Green"/>')).byName.get('LoginTitle'), 'Green Login');
    assert.equal((await strings(client, '<readStrings skinName="NoSuchSkin"/>')).byName.get('LoginTitle'), 'Server Login');
    assert.equal((await strings(client, '<readStrings skinName="../etc"/>')).byName.get('LoginTitle'), 'Server Login');
    assert.ok(logged.events('skin.bad_strings').some((r) => r.domain === 'broken.test'));
  });
});
