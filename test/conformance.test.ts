/**
 * Conformance: the spec's examples (../shared/spec/examples) replayed against a real
 * server, comparing element names, the order of messages and the attributes whose values
 * are defined (id, errorText, errorNum, names we chose to match), not random values
 * (urlID, times, challenges). Then: every operation of the spec's inventory that the server
 * does not implement answers errorNum="500" with an errorText, never a success.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test, type TestContext } from 'node:test';
import { cramMd5Context, cramMd5Digest } from '../src/services/passwords.js';
import type { Engine, OperationTable } from '../src/ximss/engine.js';
import { registerOperations } from '../src/ximss/ops/index.js';
import { notImplementedOperations } from '../src/ximss/ops/not-implemented.js';
import { Vocabulary } from '../src/ximss/vocabulary.js';
import { serialize, XmlElement } from '../src/xml/element.js';
import { parseXml } from '../src/xml/parser.js';
import { hmacMd5Hex, loggedInClient, startTestServer, XimssClient, type TestServer } from './helpers.js';

const SPEC = fileURLToPath(new URL('../../shared/spec/', import.meta.url));
const EXAMPLES = join(SPEC, 'examples');
const OPERATIONS_TSV = join(SPEC, 'ximss-operations.tsv');

const URL_ID = /^\d+-[A-Za-z0-9]{20}$/;
const TIME = /^\d{8}T\d{6}$/;
/** Attributes whose values the spec defines and we must reproduce exactly. */
const DEFINED = ['id', 'errorText', 'errorNum'];

interface Step {
  from: 'C' | 'S';
  xml: string;
}

/** The C:/S: lines of an example file; indented lines continue the previous message. */
function loadExample(name: string): Step[] {
  const steps: Step[] = [];
  for (const line of readFileSync(join(EXAMPLES, name), 'utf8').split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const m = /^([CS]):(.*)$/.exec(line);
    if (m) steps.push({ from: m[1] as 'C' | 'S', xml: m[2]!.trim() });
    else steps[steps.length - 1]!.xml += '\n' + line;
  }
  return steps;
}

/**
 * Skips a test whose part of the spec is not beside the checkout (a clone on its own); in
 * CI, where ../shared is always there, its absence is a failure, not a skip.
 */
function specMissing(t: TestContext, what: string): void {
  if (process.env.CI) assert.fail(`${what} (CI runs with ../shared beside the checkout)`);
  t.skip(what);
}

function haveExamples(t: TestContext, ...files: string[]): boolean {
  const missing = files.filter((f) => !existsSync(join(EXAMPLES, f)));
  if (missing.length > 0) specMissing(t, `spec examples not present: ${missing.join(', ')} (looked in ${EXAMPLES})`);
  return missing.length === 0;
}

/**
 * `actual` has the element name of `expected` and every attribute `expected` has; the
 * DEFINED ones (and those in `same`) with the same value. `extra` lists attributes the
 * spec defines for this message that the example happens not to show.
 */
function assertLike(actual: XmlElement | undefined, expected: XmlElement, options: { same?: string[]; extra?: string[] } = {}): void {
  assert.ok(actual, `expected <${expected.name}>, got nothing`);
  assert.equal(actual.name, expected.name);
  const same = [...DEFINED, ...(options.same ?? [])];
  for (const key of Object.keys(expected.attrs)) {
    assert.ok(key in actual.attrs, `<${actual.name}> lacks ${key}`);
    if (same.includes(key)) assert.equal(actual.attrs[key], expected.attrs[key], `<${actual.name}> ${key}`);
  }
  for (const key of Object.keys(actual.attrs)) {
    assert.ok(key in expected.attrs || (options.extra ?? []).includes(key), `<${actual.name}> has an unexpected ${key}`);
  }
}

/** Sends one request as written in the example and returns what came back up to its response. */
async function exchange(client: XimssClient, xml: string): Promise<{ messages: XmlElement[]; raw: string[] }> {
  const id = parseXml(xml).attrs.id!;
  const start = client.received.length;
  client.sendRaw(xml);
  const end = await client.until(() => {
    const i = client.received.findIndex((m, index) => index >= start && m.name === 'response' && m.attrs.id === id);
    return i >= 0 ? i + 1 : undefined;
  });
  return { messages: client.received.slice(start, end), raw: client.raw.slice(start, end) };
}

/** Splits an example into requests, each with the server messages that follow it. */
function turns(steps: Step[]): { request: string; replies: XmlElement[] }[] {
  const out: { request: string; replies: XmlElement[] }[] = [];
  for (const step of steps) {
    if (step.from === 'C') out.push({ request: step.xml, replies: [] });
    else out[out.length - 1]!.replies.push(parseXml(step.xml));
  }
  return out;
}

let server: TestServer;
before(async () => {
  server = await startTestServer();
  await server.addAccount('user1@example.dom', '123rtu', 'User J. Smith');
  await server.addAccount('user1@example2.dom', 'rrr123', 'User J. Smith');
  await server.addAccount('tim@example.test', 'tanstaaftanstaaf', 'Tim');
});
after(() => server.stop());

describe('spec examples', () => {
  test('001: noop and an unknown command, byte for byte', async (t) => {
    if (!haveExamples(t, '001-noop.txt')) return;
    const client = await loggedInClient(server.ports.ximss, 'user1@example.dom', '123rtu');
    for (const turn of turns(loadExample('001-noop.txt'))) {
      const { messages, raw } = await exchange(client, turn.request);
      assert.equal(messages.length, turn.replies.length, `replies to ${turn.request}`);
      turn.replies.forEach((expected, i) => {
        assertLike(messages[i], expected);
        // Nothing random in these responses: the compact serialization must match exactly.
        assert.equal(raw[i], serialize(expected));
      });
    }
    client.close();
  });

  test('002: asynchronous alerts around a synchronous noop', async (t) => {
    if (!haveExamples(t, '002-noop.txt')) return;
    const steps = loadExample('002-noop.txt');
    const expected = steps.filter((s) => s.from === 'S').map((s) => parseXml(s.xml));
    assert.deepEqual(expected.map((e) => e.name), ['alert', 'response', 'alert']);
    const client = await loggedInClient(server.ports.ximss, 'user1@example.dom', '123rtu');
    const account = (await server.services.accounts.find('user1@example.dom'))!;
    const start = client.received.length;
    await server.services.alerts.post(account, expected[0]!.text());
    await client.until(() => client.received.length > start);
    const { messages } = await exchange(client, steps[0]!.xml);
    await server.services.alerts.post(account, expected[2]!.text());
    await client.until(() => client.received.length >= start + 3);
    const got = client.received.slice(start);
    assert.equal(got.length, 3);
    assert.equal(messages.at(-1), got[1]);
    got.forEach((message, i) => {
      assertLike(message, expected[i]!);
      if (message.name === 'alert') {
        assert.equal(message.text(), expected[i]!.text());
        assert.match(message.attrs.gmtTime!, TIME);
        assert.match(message.attrs.localTime!, TIME);
      }
    });
    client.close();
  });

  test('003: clear-text login', async (t) => {
    if (!haveExamples(t, '003-login.txt')) return;
    const [turn] = turns(loadExample('003-login.txt'));
    const client = await XimssClient.connect(server.ports.ximss);
    const { messages, raw } = await exchange(client, turn!.request);
    assert.equal(messages.length, 2);
    // The account was created with the example's name and real name: those must match too.
    assertLike(messages[0], turn!.replies[0]!, { same: ['userName', 'realName'], extra: ['version'] });
    assert.match(messages[0]!.attrs.urlID!, URL_ID);
    assert.match(messages[0]!.attrs.version!, /^\d+(\.\d+)+$/);
    assert.ok(raw[0]!.startsWith('<session id="A001" '), 'id comes first, as in the example');
    assertLike(messages[1], turn!.replies[1]!);
    assert.equal(raw[1], serialize(turn!.replies[1]!));
    client.close();
  });

  test('004: the session data message carries urlID, userName, realName and version', async (t) => {
    if (!haveExamples(t, '004-login.txt')) return;
    const [turn] = turns(loadExample('004-login.txt'));
    const client = await XimssClient.connect(server.ports.ximss);
    const { messages } = await exchange(client, turn!.request);
    assert.equal(messages.length, 2);
    assertLike(messages[0], turn!.replies[0]!, { same: ['realName'] });
    // The example logs in as user1@example2.dom and shows user1@example.dom (a slip in the
    // spec): the server reports the account actually authenticated.
    assert.equal(messages[0]!.attrs.userName, parseXml(turn!.request).attrs.authData);
    assert.match(messages[0]!.attrs.version!, /^\d+\.\d+\.\d+$/);
    assertLike(messages[1], turn!.replies[1]!);
    client.close();
  });

  test('005: CRAM-MD5 login with a challenge (RFC 2195)', async (t) => {
    if (!haveExamples(t, '005-login.txt')) return;
    const steps = loadExample('005-login.txt');
    assert.deepEqual(steps.map((s) => s.from), ['C', 'S', 'C', 'S', 'S']);
    const [login, challengeExample, authExample, sessionExample, responseExample] = steps.map((s) => parseXml(s.xml)) as XmlElement[];

    // The example is the RFC 2195 one: check our HMAC-MD5 (client side here, and the
    // server's precomputed-context implementation) against it.
    const rfcChallenge = Buffer.from(challengeExample!.attrs.value!, 'base64').toString('utf8');
    const rfcAnswer = Buffer.from(authExample!.attrs.value!, 'base64').toString('utf8');
    assert.equal(rfcAnswer, `tim ${hmacMd5Hex('tanstaaftanstaaf', rfcChallenge)}`);
    assert.equal(rfcAnswer, `tim ${cramMd5Digest(cramMd5Context('tanstaaftanstaaf'), rfcChallenge)}`);

    // Our challenge is random, so the answer is computed the same way for it.
    const client = await XimssClient.connect(server.ports.ximss);
    const start = client.received.length;
    client.sendRaw(steps[0]!.xml);
    const challenge = await client.until(() => client.received[start]);
    assertLike(challenge, challengeExample!);
    const text = Buffer.from(challenge.attrs.value!, 'base64').toString('utf8');
    assert.match(text, /^<.+@.+>$/);
    const auth = new XmlElement('auth', {
      id: authExample!.attrs.id,
      value: Buffer.from(`tim ${hmacMd5Hex('tanstaaftanstaaf', text)}`).toString('base64'),
    });
    assert.equal(auth.attrs.id, login!.attrs.id, 'auth reuses the login id');
    const { messages } = await exchange(client, auth.toString());
    assert.equal(messages.length, 2);
    assertLike(messages[0], sessionExample!, { extra: ['version'] });
    assert.equal(messages[0]!.attrs.userName, 'tim@example.test');
    assert.equal(messages[0]!.attrs.realName, 'Tim');
    assertLike(messages[1], responseExample!);
    assert.equal(client.received.length, start + 3, 'challenge, session, response: nothing else');
    client.close();
  });

  test('006: readStrings answers a strings message in the example shape', async (t) => {
    if (!haveExamples(t, '006-readStrings.txt')) return;
    const [turn] = turns(loadExample('006-readStrings.txt'));
    const expected = turn!.replies[0]!;
    const client = await loggedInClient(server.ports.ximss, 'user1@example.dom', '123rtu');
    const { messages } = await exchange(client, turn!.request);
    assert.equal(messages.length, 2);
    const strings = messages[0]!;
    assertLike(strings, expected, { same: ['language'], extra: ['skinName', 'timeModified'] });
    assertLike(messages[1], turn!.replies[1]!);
    // Every entry of the example that the server's vocabulary has takes the example's form.
    const byName = new Map(strings.elements().map((e) => [e.attrs.name, e]));
    for (const entry of expected.elements()) {
      const ours = byName.get(entry.attrs.name);
      if (!ours) continue;
      assert.equal(ours.name, entry.name, `${entry.attrs.name} is a <${entry.name}>`);
      if (entry.name === 'string') assert.equal(ours.text(), entry.text());
      else {
        const named = entry.elements('string').every((s) => s.attrs.name !== undefined);
        for (const item of ours.elements()) {
          assert.equal(item.name, 'string');
          assert.equal(item.attrs.name !== undefined, named, `${entry.attrs.name}: dictionary items are named, array items are not`);
        }
      }
    }
    assert.ok(byName.has('AppendButton'), 'the example entries are in the English vocabulary');
    client.close();
  });

  test('006: the vocabulary of the example is served exactly as the example shows it', async (t) => {
    if (!haveExamples(t, '006-readStrings.txt')) return;
    const [turn] = turns(loadExample('006-readStrings.txt'));
    const expected = turn!.replies[0]!;
    const dir = mkdtempSync(join(tmpdir(), 'ximssd-vocab-'));
    try {
      writeFileSync(
        join(dir, 'English.json'),
        JSON.stringify({
          AppendButton: 'Append',
          AppendModes: { simple: 'Simple Mode', advanced: 'Advanced Mode' },
          KnownFields: ['From', 'Subject'],
        }),
      );
      const body = new Vocabulary(dir).body('english');
      assert.equal(body.map((e) => e.toString()).join(''), expected.children.map((c) => serialize(c)).join(''));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('045: exeTime in the response when the request asks for it', async (t) => {
    if (!haveExamples(t, '045-noop.txt')) return;
    const client = await loggedInClient(server.ports.ximss, 'user1@example.dom', '123rtu');
    for (const turn of turns(loadExample('045-noop.txt'))) {
      const { messages, raw } = await exchange(client, turn.request);
      assert.equal(messages.length, turn.replies.length);
      turn.replies.forEach((expected, i) => {
        assertLike(messages[i], expected);
        if ('exeTime' in expected.attrs) {
          assert.match(messages[i]!.attrs.exeTime!, /^\d+$/);
          assert.ok(Number(messages[i]!.attrs.exeTime) < 5000);
        } else {
          assert.equal(raw[i], serialize(expected));
        }
      });
    }
    client.close();
  });
});

describe('operations of the spec inventory', () => {
  /** Every operation name the server registers. */
  function registeredOperations(): Set<string> {
    const names = new Set<string>();
    registerOperations({ register: (table: OperationTable) => Object.keys(table).forEach((n) => names.add(n)) } as unknown as Engine);
    return names;
  }

  function inventory(t: TestContext): string[] | undefined {
    if (!existsSync(OPERATIONS_TSV)) {
      specMissing(t, `${OPERATIONS_TSV} is not present`);
      return undefined;
    }
    const [header, ...rows] = readFileSync(OPERATIONS_TSV, 'utf8').split('\n').filter((l) => l.trim() !== '');
    assert.equal(header!.split('\t')[0], 'op');
    return rows.map((r) => r.split('\t')[0]!);
  }

  test('every spec operation the server does not implement answers errorNum="500" with an errorText', async (t) => {
    const ops = inventory(t);
    if (!ops) return;
    assert.ok(ops.length > 100, 'the inventory lists the spec operations');
    const registered = registeredOperations();
    const pending = new Set(Object.keys(notImplementedOperations));
    const unimplemented = ops.filter((op) => pending.has(op) || !registered.has(op));
    assert.ok(unimplemented.length > 0);
    t.diagnostic(`${ops.length} operations in the inventory, ${ops.length - unimplemented.length} implemented`);

    for (const loggedIn of [true, false]) {
      const client = loggedIn
        ? await loggedInClient(server.ports.ximss, 'user1@example.dom', '123rtu')
        : await XimssClient.connect(server.ports.ximss);
      const start = client.received.length;
      client.socket.write(unimplemented.map((op, i) => `<${op} id="op${i}"/>\0`).join(''));
      const last = `op${unimplemented.length - 1}`;
      await client.until(() => client.received.some((m, i) => i >= start && m.name === 'response' && m.attrs.id === last) || undefined);
      const got = client.received.slice(start);
      assert.equal(got.length, unimplemented.length, 'one response each and no data messages');
      unimplemented.forEach((op, i) => {
        const response = got[i]!;
        assert.equal(response.name, 'response', op);
        assert.equal(response.attrs.id, `op${i}`, op);
        assert.equal(response.attrs.errorNum, '500', `${op} (logged in: ${loggedIn})`);
        assert.ok(response.attrs.errorText, `${op} has an errorText`);
      });
      assert.equal(client.closed, false);
      client.close();
    }
  });

  test('every spec operation is known to the server (implemented, or answered as not implemented yet)', (t) => {
    const ops = inventory(t);
    if (!ops) return;
    const registered = registeredOperations();
    assert.deepEqual(
      ops.filter((op) => !registered.has(op)),
      [],
      'operations answered only as "unknown command"',
    );
  });
});
