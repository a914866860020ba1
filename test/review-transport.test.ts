/**
 * Review of the mail transport (queue, remote delivery, Mail Rules that send, messageSubmit,
 * password recovery): one test per defect found, over a real server and sockets.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import Database from 'better-sqlite3';
import { SMTPServer } from 'smtp-server';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { DEFAULT_DATASET_LIMITS } from '../src/services/datasets.js';
import { migrations } from '../src/store/sqlite/migrations.js';
import { SqliteQueue } from '../src/store/sqlite/queue.js';
import { RemoteDelivery } from '../src/transports/smtp/remote.js';
import { XmlElement } from '../src/xml/element.js';
import { defaultConfig } from '../src/config.js';
import { eventually, expectError, expectOk, headerValues, rfc822, startTestServer, storedRaw, storedUids, XimssClient, type TestServer } from './helpers.js';

const PASSWORD = 'review-secret';
const DOMAIN = 'example.test';

/** A TCP server that accepts connections and does what `onConnection` says (by default: nothing). */
async function rawServer(onConnection: (socket: net.Socket) => void = () => {}): Promise<{ port: number; sockets: net.Socket[]; close(): void }> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    sockets,
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe('the queue and its connections to other servers', () => {
  test('no busy polling while a delivery to another server is under way', async () => {
    const silent = await rawServer();
    const server = await startTestServer({ outbound: { relay: `127.0.0.1:${silent.port}` } });
    try {
      const queue = server.services.store.queue;
      let scans = 0;
      const nextDue = queue.nextDue.bind(queue);
      queue.nextDue = (...args: Parameters<typeof queue.nextDue>) => {
        scans++;
        return nextDue(...args);
      };
      await server.services.queue.submit({ sender: `a@${DOMAIN}`, recipients: ['x@remote.example'], raw: rfc822([['Subject', 'x']], 'hi\n'), source: 'authenticated' });
      await eventually(() => silent.sockets.length > 0, 'the connection to the relay', 10_000);
      scans = 0;
      await sleep(500);
      // The relay never greets: the attempt waits. The queue must wait with it, not poll.
      assert.ok(scans <= 2, `the queue looked for due work ${scans} times in 500 ms`);
    } finally {
      silent.close();
      await server.stop();
    }
  });

  test('closing the server ends a delivery under way instead of waiting for the other server', async () => {
    const silent = await rawServer();
    const server = await startTestServer({ outbound: { relay: `127.0.0.1:${silent.port}` } });
    try {
      await server.services.queue.submit({ sender: `a@${DOMAIN}`, recipients: ['x@remote.example'], raw: rfc822([['Subject', 'x']], 'hi\n'), source: 'authenticated' });
      await eventually(() => silent.sockets.length > 0, 'the connection to the relay', 10_000);
      const started = Date.now();
      const closed = await Promise.race([server.close().then(() => true), sleep(5000).then(() => false)]);
      assert.ok(closed, 'the server closed within 5 s (the relay would keep it for the 30 s greeting timeout)');
      assert.ok(Date.now() - started < 5000);
    } finally {
      silent.close();
      await server.stop().catch(() => {});
    }
  });

  test('a server answering a byte at a time does not keep the attempt for good', async () => {
    // Greets, then answers EHLO one byte every 100 ms, never finishing the reply: no read
    // ever times out.
    const trickle = await rawServer((socket) => {
      socket.write('220 slow.example ESMTP\r\n');
      socket.once('data', () => {
        const timer = setInterval(() => socket.write('2'), 100);
        socket.on('close', () => clearInterval(timer));
      });
    });
    const server = await startTestServer({ outbound: { relay: `127.0.0.1:${trickle.port}` } });
    try {
      const remote = new RemoteDelivery(server.config.outbound, DOMAIN, { sessionLimitMs: 500 });
      const outcome = await Promise.race([
        remote.deliver({ sender: `a@${DOMAIN}`, raw: rfc822([['Subject', 'x']], 'hi\n'), ret: null, envid: null }, [{ address: 'x@remote.example', notify: null, orcpt: null }]),
        sleep(5000).then(() => undefined),
      ]);
      assert.ok(outcome, 'the attempt ended');
      assert.equal(outcome[0]!.kind, 'temporary');
    } finally {
      trickle.close();
      await server.stop();
    }
  });

  test('a recipient the server refuses for now does not hold up the next transaction on the connection (RSET)', async () => {
    // Each recipient has its own ORCPT: one transaction each. The first is refused with 452.
    const delivered: string[] = [];
    const sink = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      onRcptTo(address, _session, callback) {
        callback(address.address.startsWith('full') ? Object.assign(new Error('4.2.2 Mailbox full'), { responseCode: 452 }) : undefined);
      },
      onData(stream, session, callback) {
        stream.resume();
        stream.on('end', () => {
          delivered.push(...session.envelope.rcptTo.map((r) => r.address));
          callback();
        });
      },
    });
    await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', () => resolve()));
    const server = await startTestServer({ outbound: { relay: `127.0.0.1:${(sink.server.address() as net.AddressInfo).port}` } });
    try {
      await server.services.queue.submit({
        sender: `a@${DOMAIN}`,
        recipients: [
          { address: 'full@remote.example', orcpt: 'rfc822;full@remote.example' },
          { address: 'ok@remote.example', orcpt: 'rfc822;ok@remote.example' },
        ],
        raw: rfc822([['Subject', 'x']], 'hi\n'),
        source: 'authenticated',
      });
      // The sink has the message before the queue has recorded its 250: wait for both.
      await eventually(
        async () => {
          if (!delivered.includes('ok@remote.example')) return false;
          const [entry] = await server.services.store.queue.list();
          return entry?.recipients.find((r) => r.address === 'ok@remote.example')?.state !== 'pending';
        },
        'the delivery to ok@remote.example (the first attempt; a retry would come a minute later)',
        5000,
      );
      const [queued] = await server.services.store.queue.list();
      assert.deepEqual(queued?.recipients.filter((r) => r.state === 'pending').map((r) => r.address), ['full@remote.example']);
    } finally {
      await server.stop();
      await new Promise<void>((resolve) => sink.close(() => resolve()));
    }
  });
});

describe('delivery to many domains', () => {
  test('a message to 40 domains does not open 40 connections at once', async () => {
    let open = 0;
    let most = 0;
    const delivered: string[] = [];
    const mx = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      onConnect(_session, callback) {
        most = Math.max(most, ++open);
        callback();
      },
      onClose() {
        open--;
      },
      onData(stream, session, callback) {
        stream.resume();
        stream.on('end', () => {
          delivered.push(...session.envelope.rcptTo.map((r) => r.address));
          // Slow enough for connections to overlap.
          setTimeout(callback, 50);
        });
      },
    });
    await new Promise<void>((resolve) => mx.listen(0, '127.0.0.1', () => resolve()));
    try {
      const config = { ...defaultConfig().outbound, relay: '', mxPort: (mx.server.address() as net.AddressInfo).port };
      const remote = new RemoteDelivery(config, DOMAIN, { resolveMx: async () => [{ exchange: '127.0.0.1', priority: 10 }] });
      const recipients = Array.from({ length: 40 }, (_, i) => ({ address: `u@d${i}.example`, notify: null, orcpt: null }));
      const outcomes = await remote.deliver({ sender: `a@${DOMAIN}`, raw: rfc822([['Subject', 'x']], 'hi\n'), ret: null, envid: null }, recipients);
      assert.equal(outcomes.filter((o) => o.kind === 'sent').length, 40);
      assert.equal(delivered.length, 40);
      assert.ok(most <= 10, `${most} connections at once`);
    } finally {
      await new Promise<void>((resolve) => mx.close(() => resolve()));
    }
  });
});

describe('the queue store', () => {
  test('claiming due work from a large backlog: 8 at a time, longest due first, never a message claimed twice while its lease holds', async () => {
    const db = new Database(':memory:');
    for (const migration of migrations) db.exec(migration);
    const queue = new SqliteQueue(db);
    const now = Date.now();
    for (let i = 0; i < 3000; i++) {
      await queue.enqueue({
        sender: `a@${DOMAIN}`,
        raw: Buffer.from('Subject: x\r\n\r\nhi\r\n'),
        created: now - 3000 + i,
        expires: now + 86_400_000,
        ret: null,
        envid: null,
        source: 'authenticated',
        key: null,
        recipients: [{ address: `r${i}@remote.example`, notify: null, orcpt: null }],
      });
    }
    const claimed = new Set<number>();
    let previous = 0;
    for (let round = 0; round < 200; round++) {
      const batch = await queue.claimDue(now, 8, { owner: round % 2 === 0 ? 'node-a' : 'node-b', until: now + 60_000 });
      assert.equal(batch.length, 8);
      for (const m of batch) {
        assert.ok(!claimed.has(m.id), `message ${m.id} claimed twice`);
        claimed.add(m.id);
        assert.ok(m.id > previous, 'the longest due first (queued in id order here)');
        previous = m.id;
      }
    }
    db.close();
  });
});

describe('Mail Rules sending on, messageSubmit and recoverPassword', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer({ outbound: { relay: '127.0.0.1:1' } });
  });
  after(() => server.stop());

  async function newUser(name: string): Promise<{ address: string; client: XimssClient }> {
    const address = await server.newAccount(name, { password: PASSWORD });
    const { client } = await server.login(address, PASSWORD);
    return { address, client };
  }

  test('three accounts redirecting to the two others: each sends a message on once (no exponential mail loop)', async () => {
    const users = [await newUser('ra'), await newUser('rb'), await newUser('rc')];
    for (const u of users) {
      const others = users.filter((o) => o !== u).map((o) => o.address);
      const request = new XmlElement('ruleSet', { name: 'away', priority: 5 });
      request.add('action', { opCode: 'Redirect to' }, others.join(', '));
      expectOk(await u.client.request(request), 'ruleSet');
    }
    await server.services.queue.submit({
      sender: 'someone@remote.example',
      recipients: [users[0]!.address],
      raw: rfc822([['From', 'someone@remote.example'], ['To', users[0]!.address], ['Subject', 'ring'], ['Message-ID', '<ring@remote.example>']], 'hi\n'),
      source: 'remote',
    });
    const count = async (): Promise<number> => {
      let total = 0;
      for (const u of users) total += (await storedUids(server, u.address, 'INBOX')).length;
      return total;
    };
    // Done when the queue is empty; with the hop limit alone it keeps doubling for 30 hops.
    await eventually(async () => (await server.services.store.queue.list()).length === 0 && (await count()) > 0, 'the queue to empty', 15_000);
    const total = await count();
    assert.ok(total <= 11, `copies stored: ${total}`);
  });

  function submit(to: string, fields: Record<string, string>, attrs: Record<string, string> = {}): XmlElement {
    const email = new XmlElement('EMail');
    for (const [name, value] of Object.entries(fields)) email.add(name, undefined, value);
    email.add('To', undefined, to);
    email.add('Subject', undefined, 'review');
    email.add('MIME', { type: 'text', subtype: 'plain' }, 'Hello.');
    const request = new XmlElement('messageSubmit', attrs);
    request.append(email);
    return request;
  }

  test('a Sender naming another account is replaced with the user\'s own', async () => {
    const alice = await newUser('alice');
    const bob = await newUser('bob');
    const carol = await newUser('carol');
    expectOk(await alice.client.request(submit(carol.address, { From: bob.address, Sender: bob.address })), 'messageSubmit');
    const [uid] = await eventually(async () => {
      const uids = await storedUids(server, carol.address, 'INBOX');
      return uids.length > 0 ? uids : undefined;
    }, 'the delivery', 10_000);
    const raw = (await storedRaw(server, carol.address, 'INBOX', uid!))!;
    assert.deepEqual(headerValues(raw, 'From'), [bob.address]);
    assert.deepEqual(headerValues(raw, 'Sender'), [alice.address]);
  });

  test('a dataset that cannot take the recipients does not turn a queued message into an error', async () => {
    const alice = await newUser('alice');
    const carol = await newUser('carol');
    const account = (await server.services.accounts.find(alice.address))!;
    for (let i = 0; i < DEFAULT_DATASET_LIMITS.maxDatasets; i++) await server.services.store.datasets.create(account.id, `d${i}`, DEFAULT_DATASET_LIMITS);
    expectOk(await alice.client.request(submit(carol.address, {}, { dataset: 'Replied' })), 'messageSubmit with a dataset that cannot be created');
    await eventually(async () => (await storedUids(server, carol.address, 'INBOX')).length === 1, 'the delivery', 10_000);
  });

  test('recoverPassword: the per-account limit holds however the name is spelled', async () => {
    const address = `rescue@${DOMAIN}`;
    await server.services.accounts.create({ address, password: PASSWORD, recoveryEmail: 'owner@remote.example' });
    const local = address.slice(0, address.indexOf('@'));
    const client = await XimssClient.connect(server.ports.ximss);
    const spellings = [local, local.toUpperCase(), ` ${local}`, address];
    for (const userName of spellings.slice(0, 3)) expectOk(await client.request(new XmlElement('recoverPassword', { userName })), `recoverPassword ${userName}`);
    expectError(await client.request(new XmlElement('recoverPassword', { userName: spellings[3]! })), /too many password recovery requests/);
    const queued = (await server.services.store.queue.list()).filter((q) => q.recipients.some((r) => r.address === 'owner@remote.example'));
    assert.equal(queued.length, 3);
  });

  test('a password reset makes the account\'s other reset links stop working', async () => {
    const address = `twolinks@${DOMAIN}`;
    const account = await server.services.accounts.create({ address, password: PASSWORD, recoveryEmail: 'owner@remote.example' });
    const { createHash } = await import('node:crypto');
    const hash = (token: string): string => createHash('sha256').update(token).digest('hex');
    const expires = Date.now() + 60_000;
    await server.services.store.accounts.addPasswordReset(hash('first-token'), account.id, expires);
    await server.services.store.accounts.addPasswordReset(hash('second-token'), account.id, expires);
    const recovery = server.services.passwordRecovery;
    assert.equal((await recovery.accountOf('second-token'))?.id, account.id);
    await recovery.reset('first-token', 'a new password');
    assert.equal(await recovery.accountOf('second-token'), undefined, 'the other link is void');
    await assert.rejects(recovery.reset('second-token', 'another one'), /not valid/);
  });
});
