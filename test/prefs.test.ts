/**
 * Preferences over the wire (spec section "Preferences"; INTEROP.md: clients read them right
 * after login): prefsRead of the effective, default and custom values with name filters,
 * prefsStore (checked values, `default` removing a custom value, arrays and dictionaries,
 * UserFromAddr/UserFromName composing UserFrom), prefsReload, and prefsModified reaching
 * every session of the account.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { XmlElement } from '../src/xml/element.js';
import { readValue } from '../src/xml/objects.js';
import { fails, loggedInClient, ok, startTestServer, type TestServer, type XimssClient } from './helpers.js';

let server: TestServer;
const clients: XimssClient[] = [];

before(async () => {
  server = await startTestServer();
});
after(async () => {
  for (const c of clients) c.close();
  await server.stop();
});

async function login(address: string): Promise<XimssClient> {
  const client = await loggedInClient(server.ports.ximss, address, 'secret');
  clients.push(client);
  return client;
}

/** The one `prefs` message of a prefsRead, as name → value. */
async function read(client: XimssClient, request: string): Promise<{ attrs: Record<string, string>; values: Map<string, unknown> }> {
  const reply = await ok(client, request);
  const prefs = reply.messages.filter((m) => m.name === 'prefs');
  assert.equal(prefs.length, 1, `one prefs message for ${request}`);
  const message = prefs[0] as XmlElement;
  return { attrs: message.attrs, values: new Map(message.elements().map((e) => [e.name, readValue(e)])) };
}

describe('prefsRead', () => {
  test('bare: every effective preference, defaults included; name elements select; type="custom" starts empty', async () => {
    const c = await login(await server.newAccount('prefs'));
    const all = await read(c, '<prefsRead/>');
    assert.equal(all.attrs.type, undefined);
    assert.equal(all.values.get('Language'), 'English');
    assert.equal(all.values.get('DeleteMode'), 'Move To Trash');
    assert.equal(all.values.get('TimeZone'), 'HostOS');
    const some = await read(c, '<prefsRead><name>Language</name><name>SentBox</name><name>NoSuchPref</name></prefsRead>');
    assert.deepEqual([...some.values.keys()], ['Language', 'SentBox'], 'only the names asked for, in their order; unknown names are left out');
    const inherited = await read(c, '<prefsRead><name>hasOwnProperty</name><name>constructor</name></prefsRead>');
    assert.equal(inherited.values.size, 0, 'names of object methods are not preferences');
    const custom = await read(c, '<prefsRead type="custom"/>');
    assert.equal(custom.attrs.type, 'custom');
    assert.equal(custom.values.size, 0);
    const defaults = await read(c, '<prefsRead type="default"><name>TrashBox</name></prefsRead>');
    assert.equal(defaults.attrs.type, 'default');
    assert.equal(defaults.values.get('TrashBox'), 'Trash');
  });

  test('an unknown type is refused', async () => {
    const c = await login(await server.newAccount('prefs'));
    await fails(c, '<prefsRead type="everything"/>', /unknown prefs type/);
    await fails(c, '<prefsStore type="default"><Language>German</Language></prefsStore>', /unknown prefs type/);
  });

  test('Public Info: stored apart from the preferences, read back with type="publicInfo"; "default" removes a value', async () => {
    const address = await server.newAccount('prefs');
    const c = await login(address);
    assert.equal((await read(c, '<prefsRead type="publicInfo"/>')).values.size, 0);
    await ok(c, '<prefsStore type="publicInfo"><Title>Engineer</Title><Phone><subValue>+1 555 0100</subValue><subValue>+1 555 0101</subValue></Phone></prefsStore>');
    const info = await read(c, '<prefsRead type="publicInfo"/>');
    assert.equal(info.attrs.type, 'publicInfo');
    assert.equal(info.values.get('Title'), 'Engineer');
    assert.deepEqual(info.values.get('Phone'), ['+1 555 0100', '+1 555 0101']);
    assert.equal((await read(c, '<prefsRead type="custom"/>')).values.size, 0, 'not among the preferences');
    await ok(c, '<prefsStore type="publicInfo"><Title>default</Title></prefsStore>');
    assert.deepEqual([...(await read(c, '<prefsRead type="publicInfo"/>')).values.keys()], ['Phone']);
    const stored = await server.services.accounts.find(address);
    assert.deepEqual(stored?.publicInfo, { Phone: ['+1 555 0100', '+1 555 0101'] }, 'kept in the store');
  });
});

describe('prefsStore', () => {
  test('custom values: stored, read back as custom and effective; "default" removes one; arrays and dictionaries keep their shape', async () => {
    const c = await login(await server.newAccount('prefs'));
    await ok(
      c,
      '<prefsStore><TimeZone>Europe/Berlin</TimeZone><DeleteMode>Mark</DeleteMode>' +
        '<ClientLayout><subKey key="columns"><subValue>From</subValue><subValue>Subject</subValue></subKey><subKey key="size">12</subKey></ClientLayout>' +
        '</prefsStore>',
    );
    const custom = await read(c, '<prefsRead type="custom"/>');
    assert.equal(custom.values.get('TimeZone'), 'Europe/Berlin');
    assert.equal(custom.values.get('DeleteMode'), 'Mark');
    assert.deepEqual(custom.values.get('ClientLayout'), { columns: ['From', 'Subject'], size: '12' });
    assert.equal((await read(c, '<prefsRead><name>TimeZone</name></prefsRead>')).values.get('TimeZone'), 'Europe/Berlin');

    await ok(c, '<prefsStore><TimeZone>default</TimeZone></prefsStore>');
    assert.equal((await read(c, '<prefsRead type="custom"/>')).values.has('TimeZone'), false, 'the custom value is gone');
    assert.equal((await read(c, '<prefsRead><name>TimeZone</name></prefsRead>')).values.get('TimeZone'), 'HostOS', 'the default is effective again');
  });

  test('values the server reads are checked; a refused request changes nothing', async () => {
    const c = await login(await server.newAccount('prefs'));
    await fails(c, '<prefsStore><Language>French</Language><DeleteMode>Shred</DeleteMode></prefsStore>', /DeleteMode: must be one of Mark, Move To Trash, Immediately/);
    await fails(c, '<prefsStore><TimeZone>Mars/Olympus</TimeZone></prefsStore>', /TimeZone: must be HostOS or a time zone name/);
    await fails(c, '<prefsStore><SentBox>   </SentBox></prefsStore>', /SentBox: must name a mailbox/);
    await fails(c, '<prefsStore><UserFrom>not an address</UserFrom></prefsStore>', /UserFrom: must be an E-mail address/);
    await fails(c, '<prefsStore><Language>A</Language><Language>B</Language></prefsStore>', /given twice/);
    assert.equal((await read(c, '<prefsRead type="custom"/>')).values.size, 0, 'nothing stored');
  });

  test('UserFromAddr and UserFromName compose UserFrom; prefsRead splits it again', async () => {
    const c = await login(await server.newAccount('prefs'));
    await ok(c, '<prefsStore><UserFromAddr>boss@example.test</UserFromAddr><UserFromName>The Boss</UserFromName></prefsStore>');
    const custom = await read(c, '<prefsRead type="custom"/>');
    assert.equal(custom.values.get('UserFrom'), 'The Boss <boss@example.test>');
    assert.equal(custom.values.get('UserFromAddr'), 'boss@example.test');
    assert.equal(custom.values.get('UserFromName'), 'The Boss');
    assert.equal(custom.values.has('UserFromAddrX'), false);
    await fails(c, '<prefsStore><UserFromAddr>Someone &lt;x@y.test&gt;</UserFromAddr></prefsStore>', /UserFromAddr: must be an E-mail address/);
  });

  test('preferences named __proto__ or toString are stored and read back like any other', async () => {
    const c = await login(await server.newAccount('prefs'));
    await ok(c, '<prefsStore><__proto__>kept</__proto__><toString>too</toString><Plain>yes</Plain></prefsStore>');
    const custom = await read(c, '<prefsRead type="custom"/>');
    assert.equal(custom.values.get('__proto__'), 'kept');
    assert.equal(custom.values.get('toString'), 'too');
    assert.equal(custom.values.get('Plain'), 'yes');
  });

  test('too many preferences are refused (the limits of src/services/preferences.ts)', async () => {
    const c = await login(await server.newAccount('prefs'));
    const many = Array.from({ length: 501 }, (_, i) => `<P${i}>x</P${i}>`).join('');
    await fails(c, `<prefsStore>${many}</prefsStore>`, /too many preferences/);
    await fails(c, `<prefsStore><Big>${'x'.repeat(300 * 1024)}</Big></prefsStore>`, /too large/);
  });
});

describe('sessions see the change', () => {
  test('prefsModified reaches every session of the account (the storing one too); the other session uses the new DeleteMode at once', async () => {
    const address = await server.newAccount('prefs');
    const [a, b] = [await login(address), await login(address)];
    await ok(a, '<prefsStore><DeleteMode>Mark</DeleteMode></prefsStore>');
    await a.nextAsync('prefsModified');
    await b.nextAsync('prefsModified');
    // hideDeleted follows DeleteMode (off when it is Mark): the other session's views see it.
    await ok(b, '<mailboxCreate mailbox="Kept"/>');
    await ok(b, '<folderOpen folder="K" mailbox="Kept" sortField="INTERNALDATE"><field>FLAGS</field></folderOpen>');
    const folder = server.services.sessions.forAccount((await server.services.accounts.find(address))!.id).find((s) => s.folders.has('K'));
    assert.ok(folder, 'the folder is open in a session');
    assert.equal(folder.prefs.DeleteMode, 'Mark');
  });

  test('prefsReload re-reads what another process stored (here: the account service directly, as the command line would)', async () => {
    const address = await server.newAccount('prefs');
    const c = await login(address);
    const account = (await server.services.accounts.find(address))!;
    await server.services.store.accounts.mergePrefs(account.id, { Language: 'German' });
    await ok(c, '<prefsReload/>');
    const session = server.services.sessions.forAccount(account.id)[0]!;
    assert.equal(session.prefs.Language, 'German');
  });
});
