/**
 * Federation (RFC 6120 server-to-server, XEP-0220 dialback) against a REAL second server:
 * Prosody from Debian (test/fixtures/prosody.ts) serving remote.test, reached through the
 * injected resolver (SRV _xmpp-server._tcp.remote.test → its s2s port on 127.0.0.1), and
 * reaching example.test on ximssd's s2s port through the fixture's static route. Clients are
 * real slixmpp processes on both servers and a XIMSS session on ximssd. Prosody's loopback
 * certificate is self-signed, so both directions authenticate with dialback.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { createLogger, type Logger } from '../src/log.js';
import type { DnsResolver } from '../src/services/mail-auth.js';
import type { XmlElement } from '../src/xml/element.js';
import { ensureProsody, startProsody, type Prosody } from './fixtures/prosody.js';
import { ensureSlixmpp, XmppPeer, type MessageEvent, type PresenceEvent, type RosterPushEvent } from './fixtures/xmpp-peer.js';
import { freePort, ok, startTestServer, type TestServer, type XimssClient } from './helpers.js';

const prosodyAvailability = await ensureProsody();
const slixmpp = await ensureSlixmpp().then(
  () => undefined,
  (err: unknown) => `slixmpp cannot be installed: ${String(err)}`,
);
const skip = !prosodyAvailability.available ? prosodyAvailability.reason : (slixmpp ?? false);

const REMOTE = 'remote.test';

/** The first async message of this name that `match` accepts (taken off the list). */
const waitAsync = (client: XimssClient, name: string, match: (m: XmlElement) => boolean = () => true): Promise<XmlElement> => client.takeAsync(name, match);

let prosody: Prosody;
let server: TestServer;
let xmppPort: number;
let s2sPort: number;
/** A port nothing listens on (a "dead" server). */
let deadPort: number;
/** Prosody's direct-TLS s2s port (XEP-0368). */
let prosodyDirectTls: number;
const peers: XmppPeer[] = [];
/** What ximssd's s2s log said (events only). */
const events: Record<string, unknown>[] = [];

/** DNS as the tests want it: remote.test by SRV, dead.test to a closed port, everything else unknown. */
const resolver: DnsResolver = async (name, rrtype) => {
  const notFound = (): never => {
    throw Object.assign(new Error(`queryDNS ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
  };
  if (rrtype === 'SRV') {
    // remote.test by direct TLS first (XEP-0368), STARTTLS as the fallback; its room service by STARTTLS only.
    if (name === `_xmpps-server._tcp.${REMOTE}`) return [{ name: `xmpp.${REMOTE}`, port: prosodyDirectTls, priority: 0, weight: 0 }];
    if (name === `_xmpp-server._tcp.${REMOTE}`) return [{ name: `xmpp.${REMOTE}`, port: prosody.s2sPort!, priority: 5, weight: 0 }];
    if (name === `_xmpp-server._tcp.conference.${REMOTE}`) return [{ name: `xmpp.${REMOTE}`, port: prosody.s2sPort!, priority: 0, weight: 0 }];
    if (name === '_xmpp-server._tcp.refusing.test') return [{ name: '.', port: 0, priority: 0, weight: 0 }];
    if (name === '_xmpp-server._tcp.dead.test') return [{ name: '127.0.0.1', port: deadPort, priority: 0, weight: 0 }];
    return notFound();
  }
  if (rrtype === 'A' && name === `xmpp.${REMOTE}`) return ['127.0.0.1'];
  return notFound();
};

/** The server's log, JSON lines at debug level, keeping the s2s events (nothing is printed). */
function capturingLogger(into: Record<string, unknown>[] = events): Logger {
  return createLogger({
    level: 'debug',
    destination: {
      write(line: string) {
        const record = JSON.parse(line) as Record<string, unknown>;
        if (typeof record.event === 'string' && record.event.startsWith('s2s.')) into.push(record);
      },
    },
  });
}

async function local(jid: string, resource: string): Promise<XmppPeer> {
  const p = await XmppPeer.connect({ jid, password: 'secret', host: '127.0.0.1', port: xmppPort, resource });
  peers.push(p);
  return p;
}

async function remote(user: string, resource: string): Promise<XmppPeer> {
  const p = await XmppPeer.connect({ jid: `${user}@${REMOTE}`, password: `${user}-pw`, host: '127.0.0.1', port: prosody.port, resource });
  peers.push(p);
  return p;
}

/** A raw server stream for the tests' own bytes: reads until `pattern` shows up; STARTTLS with a client certificate. */
interface RawStream {
  socket: net.Socket;
  until(pattern: RegExp, ms?: number): Promise<string>;
  /** After `<proceed/>`: TLS on the connection (what was read so far is forgotten). */
  startTls(options: tls.ConnectionOptions): Promise<void>;
}

function rawStream(port: number): RawStream {
  let text = '';
  let ended = false;
  const waiters: (() => void)[] = [];
  const wake = (): void => {
    for (const w of waiters.splice(0)) w();
  };
  const listen = (socket: net.Socket): void => {
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
      wake();
    });
    socket.on('close', () => {
      ended = true;
      wake();
    });
    socket.on('error', () => {});
  };
  const raw: RawStream = {
    socket: net.connect(port, '127.0.0.1'),
    async until(pattern, ms = 10_000) {
      const deadline = Date.now() + ms;
      while (!pattern.test(text)) {
        if (ended || Date.now() > deadline) throw new Error(`${pattern} not seen; the stream said: ${text.slice(0, 2000)}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 100);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      return text;
    },
    async startTls(options) {
      const plain = raw.socket;
      plain.removeAllListeners('data');
      plain.removeAllListeners('close');
      text = '';
      const secure = tls.connect({ ...options, socket: plain });
      await new Promise<void>((resolve, reject) => {
        secure.once('secureConnect', () => resolve());
        secure.once('error', reject);
      });
      raw.socket = secure;
      listen(secure);
    },
  };
  listen(raw.socket);
  return raw;
}

describe('XMPP federation with Prosody', { skip }, () => {
  before(async () => {
    [xmppPort, s2sPort, deadPort, prosodyDirectTls] = [await freePort(), await freePort(), await freePort(), await freePort()];
    prosody = await startProsody({
      domain: REMOTE,
      users: { rob: 'rob-pw', rita: 'rita-pw', ron: 'ron-pw', ria: 'ria-pw', rick: 'rick-pw' },
      s2s: true,
      muc: true,
      extraConfig: `s2s_direct_tls_ports = { ${prosodyDirectTls} }`,
      s2sRoutes: { 'example.test': s2sPort },
    });
    server = await startTestServer({ ports: { ximss: 0, http: 0, smtp: 0, xmpp: xmppPort, xmppS2s: s2sPort } }, { xmppResolver: resolver, log: capturingLogger() });
  });
  
  after(async () => {
    if (process.env.DUMP_S2S) console.log(JSON.stringify(events, null, 0).replace(/},{/g, "},\n{"));
    await Promise.all(peers.map((p) => p.close().catch(() => {})));
    await server?.stop();
    await prosody?.stop();
  });

  it('chats both ways between an XMPP user here and one on Prosody (dialback both ways, logged)', async () => {
    const a = await server.newAccount('fchat');
    const alice = await local(a, 'desk');
    const rob = await remote('rob', 'phone');
    await Promise.all([alice.presence(), rob.presence()]);
    const id = await alice.message({ to: `rob@${REMOTE}`, body: 'hello from ximssd', chatState: 'active' });
    const got = await rob.waitFor((e): e is MessageEvent => e.event === 'message' && e.body === 'hello from ximssd', { timeoutMs: 20_000 });
    assert.equal(got.from, `${a}/desk`);
    assert.equal(got.id, id);
    assert.equal(got.chatState, 'active');
    await rob.message({ to: a, body: 'hello from prosody' });
    const back = await alice.waitFor((e): e is MessageEvent => e.event === 'message' && e.body === 'hello from prosody', { timeoutMs: 20_000 });
    assert.equal(back.from, `rob@${REMOTE}/phone`);
    assert.ok(back.stanzaIds.some((s) => s.by === a), 'archived here like a local message');
    // The archive has both directions, with the remote peer.
    const page = await alice.mam({ with: `rob@${REMOTE}` });
    assert.deepEqual(page.messages.map((m) => m.body), ['hello from ximssd', 'hello from prosody']);
    const out = events.find((e) => e.event === 's2s.authenticated' && e.direction === 'out' && e.remote === REMOTE);
    assert.equal(out?.mechanism, 'dialback');
    assert.equal(out?.tls, true, 'STARTTLS first');
    const inbound = events.find((e) => e.event === 's2s.authenticated' && e.direction === 'in' && e.remote === REMOTE);
    assert.equal(inbound?.mechanism, 'dialback');
    assert.equal(inbound?.tls, true);
    const connected = events.find((e) => e.event === 's2s.connected' && e.direction === 'out' && e.remote === REMOTE && e.purpose === 'route');
    assert.equal(connected?.directTls, true, 'the _xmpps-server record came first');
    assert.equal(connected?.address, `127.0.0.1:${prosodyDirectTls}`);
    const metrics = await server.services.metrics.registry.metrics();
    assert.match(metrics, /ximssd_s2s_stanzas_total\{direction="out"\} [1-9]/);
    assert.match(metrics, /ximssd_s2s_stanzas_total\{direction="in"\} [1-9]/);
  });

  it('keeps a remote message for an offline user, and answers an unknown user with an error over s2s', async () => {
    const a = await server.newAccount('foffline');
    const rob = await remote('rob', 'offline-test');
    await rob.presence();
    await rob.message({ to: a, body: 'while you were away' });
    await rob.message({ to: 'nobody-here@example.test', body: 'anyone?' });
    const error = await rob.waitFor((e): e is MessageEvent => e.event === 'message' && e.type === 'error' && e.from === 'nobody-here@example.test', { timeoutMs: 20_000 });
    assert.match(error.xml, /service-unavailable/);
    // The first message was handled before the second (one stream, in order): it waits offline.
    const olga = await local(a, 'desk');
    await olga.presence();
    const kept = await olga.waitFor((e): e is MessageEvent => e.event === 'message' && e.body === 'while you were away');
    assert.equal(kept.from, `rob@${REMOTE}/offline-test`);
    assert.ok(kept.delay, 'with its delay stamp');
  });

  it('a XIMSS user chats with a Prosody user (sendIM / readIM)', async () => {
    const w = await server.newAccount('fximss', { realName: 'Wendy Web' });
    const { client: wendy } = await server.login(w, 'secret');
    await ok(wendy, '<signalBind clientID="browser" presence="yes" readIM="1"/>');
    await ok(wendy, '<presenceSet><presence>online</presence></presenceSet>');
    const rita = await remote('rita', 'laptop');
    await rita.presence();
    await ok(wendy, `<sendIM peer="rita@${REMOTE}" iqid="w-1">Hi Rita</sendIM>`);
    const got = await rita.waitFor((e): e is MessageEvent => e.event === 'message' && e.body === 'Hi Rita', { timeoutMs: 20_000 });
    assert.equal(got.from, `${w}/browser`);
    await rita.message({ to: `${w}/browser`, body: 'Hi Wendy' });
    const read = await waitAsync(wendy, 'readIM', (m) => m.text().includes('Hi Wendy') || m.element('body')?.text() === 'Hi Wendy');
    assert.equal(read.attrs.peer, `rita@${REMOTE}`);
  });

  it('subscribes both ways across servers, with roster pushes, presence both ways, and probes at login', async () => {
    const a = await server.newAccount('fsub');
    const alice = await local(a, 'desk');
    const ron = await remote('ron', 'pc');
    await Promise.all([alice.rosterGet(), ron.rosterGet()]);
    await Promise.all([alice.presence({ status: 'here at ximssd' }), ron.presence({ show: 'away', status: 'at prosody' })]);
    const RON = `ron@${REMOTE}`;
    await alice.subscribe(RON);
    await alice.waitFor((e): e is RosterPushEvent => e.event === 'roster_push' && e.items.some((i) => i.jid === RON && i.ask === 'subscribe'));
    await ron.waitFor((e): e is PresenceEvent => e.event === 'presence' && e.type === 'subscribe' && e.from === a, { timeoutMs: 20_000 });
    await ron.subscribed(a);
    await alice.waitFor((e): e is RosterPushEvent => e.event === 'roster_push' && e.items.some((i) => i.jid === RON && i.subscription === 'to'), { timeoutMs: 20_000 });
    // Approved: Ron's server sends his presence.
    const seenRon = await alice.waitFor((e): e is PresenceEvent => e.event === 'presence' && e.from === `${RON}/pc` && e.type === 'available', { timeoutMs: 20_000 });
    assert.equal(seenRon.status, 'at prosody');
    // The other way: Ron asks, Alice approves.
    await ron.subscribe(a);
    await alice.waitFor((e): e is PresenceEvent => e.event === 'presence' && e.type === 'subscribe' && e.from === RON, { timeoutMs: 20_000 });
    await alice.subscribed(RON);
    await alice.waitFor((e): e is RosterPushEvent => e.event === 'roster_push' && e.items.some((i) => i.jid === RON && i.subscription === 'both'));
    const seenAlice = await ron.waitFor((e): e is PresenceEvent => e.event === 'presence' && e.from === `${a}/desk` && e.type === 'available', { timeoutMs: 20_000 });
    assert.equal(seenAlice.status, 'here at ximssd');
    const ronRoster = await ron.rosterGet();
    assert.deepEqual(ronRoster.items.filter((i) => i.jid === a).map((i) => i.subscription), ['both']);
    // A presence change of each side reaches the other.
    await alice.presence({ show: 'dnd', status: 'busy now' });
    await ron.waitFor((e): e is PresenceEvent => e.event === 'presence' && e.from === `${a}/desk` && e.show === 'dnd', { timeoutMs: 20_000 });
    await ron.presence({ show: 'xa', status: 'gone fishing' });
    await alice.waitFor((e): e is PresenceEvent => e.event === 'presence' && e.from === `${RON}/pc` && e.show === 'xa', { timeoutMs: 20_000 });
    // A second resource logging in here probes Ron's server and learns his presence.
    const second = await local(a, 'tablet');
    await second.rosterGet();
    await second.presence();
    const probed = await second.waitFor((e): e is PresenceEvent => e.event === 'presence' && e.from === `${RON}/pc` && e.type === 'available', { timeoutMs: 20_000 });
    assert.equal(probed.show, 'xa');
    // Ron sees the new resource, and its going.
    await ron.waitFor((e): e is PresenceEvent => e.event === 'presence' && e.from === `${a}/tablet` && e.type === 'available', { timeoutMs: 20_000 });
    await second.close();
    await ron.waitFor((e): e is PresenceEvent => e.event === 'presence' && e.from === `${a}/tablet` && e.type === 'unavailable', { timeoutMs: 20_000 });
  });

  it('answers iq from the other server (ping, vCard, disco) and routes iq to it', async () => {
    const a = await server.newAccount('fiq', { realName: 'Iris Query' });
    const iris = await local(a, 'desk');
    const ria = await remote('ria', 'pc');
    await Promise.all([iris.presence(), ria.presence()]);
    assert.equal((await ria.ping(a)).type, 'result');
    const card = await ria.iq(`<iq type="get" to="${a}"><vCard xmlns="vcard-temp"/></iq>`);
    assert.equal(card.type, 'result');
    assert.match(card.xml, /<FN>Iris Query<\/FN>/);
    const disco = await ria.iq(`<iq type="get" to="example.test"><query xmlns="http://jabber.org/protocol/disco#info"/></iq>`);
    assert.equal(disco.type, 'result');
    assert.match(disco.xml, /category="server"/);
    const roster = await ria.iq(`<iq type="get" to="${a}"><query xmlns="jabber:iq:roster"/></iq>`);
    assert.equal(roster.type, 'error', 'another server never reads a roster');
    // To a full JID here: the resource answers (slixmpp answers pings).
    assert.equal((await ria.ping(`${a}/desk`)).type, 'result');
    // From here to the remote server and to a remote resource.
    assert.equal((await iris.ping(REMOTE)).type, 'result');
    assert.equal((await iris.ping(`ria@${REMOTE}/pc`)).type, 'result');
  });

  it('a user here joins a group chat room on Prosody and talks with its occupants', async () => {
    const a = await server.newAccount('fmuc');
    const mona = await local(a, 'desk');
    const rick = await remote('rick', 'pc');
    await Promise.all([mona.presence(), rick.presence()]);
    const room = `lounge@conference.${REMOTE}`;
    assert.ok((await rick.joinRoom(room, 'rick')).includes('110'));
    assert.ok((await mona.joinRoom(room, 'mona')).includes('110'), 'the self-presence came back through the s2s stream');
    await rick.waitFor((e): e is PresenceEvent => e.event === 'presence' && e.from === `${room}/mona`, { timeoutMs: 20_000 });
    await mona.groupchat(room, 'hello room');
    const heard = await rick.waitFor((e): e is MessageEvent => e.event === 'message' && e.type === 'groupchat' && e.body === 'hello room', { timeoutMs: 20_000 });
    assert.equal(heard.from, `${room}/mona`);
    await rick.groupchat(room, 'welcome mona');
    const reply = await mona.waitFor((e): e is MessageEvent => e.event === 'message' && e.type === 'groupchat' && e.body === 'welcome mona', { timeoutMs: 20_000 });
    assert.equal(reply.from, `${room}/rick`);
    assert.ok(events.some((e) => e.event === 's2s.authenticated' && e.direction === 'in' && e.remote === `conference.${REMOTE}`), 'the room service proved its own domain');
    const toRooms = events.find((e) => e.event === 's2s.authenticated' && e.direction === 'out' && e.remote === `conference.${REMOTE}`);
    assert.equal(toRooms?.tls, true, 'STARTTLS');
    assert.equal(events.find((e) => e.event === 's2s.connected' && e.direction === 'out' && e.remote === `conference.${REMOTE}` && e.purpose === 'route')?.directTls, false);
  });

  it('a domain that does not resolve: the XMPP sender gets remote-server-not-found, the XIMSS user errorIM', async () => {
    const a = await server.newAccount('fnowhere');
    const nora = await local(a, 'desk');
    await nora.message({ to: 'someone@nowhere.test', body: 'anyone?' });
    const error = await nora.waitFor((e): e is MessageEvent => e.event === 'message' && e.type === 'error' && e.from === 'someone@nowhere.test');
    assert.match(error.xml, /remote-server-not-found/);
    assert.match(error.xml, /nowhere\.test does not resolve/);
    const ping = await nora.ping('nowhere.test');
    assert.equal(ping.type, 'error');
    assert.equal(ping.condition, 'remote-server-not-found');
    const w = await server.newAccount('fnowhere-ximss');
    const { client } = await server.login(w, 'secret');
    await ok(client, '<signalBind clientID="browser" presence="yes" readIM="1"/>');
    await ok(client, '<sendIM id="s-1" peer="someone@nowhere.test">hello?</sendIM>');
    const errorIM = await waitAsync(client, 'errorIM');
    assert.equal(errorIM.attrs.sendid, 's-1');
    assert.equal(errorIM.attrs.signalCode, '404');
    assert.match(errorIM.attrs.errorText ?? '', /nowhere\.test/);
    assert.ok(events.some((e) => e.event === 's2s.failed' && e.remote === 'nowhere.test'));
    // A domain whose SRV record says "no service here" (target "."): no fallback to the domain itself.
    await nora.message({ to: 'someone@refusing.test', body: 'hello?' });
    const refused = await nora.waitFor((e): e is MessageEvent => e.event === 'message' && e.type === 'error' && e.from === 'someone@refusing.test');
    assert.match(refused.xml, /offers no XMPP federation/);
  });

  it('a server whose port is dead: every queued stanza bounces with remote-server-not-found', async () => {
    const a = await server.newAccount('fdead');
    const dora = await local(a, 'desk');
    await dora.message({ to: 'x@dead.test', body: 'one' });
    await dora.message({ to: 'x@dead.test', body: 'two' });
    const first = await dora.waitFor((e): e is MessageEvent => e.event === 'message' && e.type === 'error' && e.body === 'one');
    const second = await dora.waitFor((e): e is MessageEvent => e.event === 'message' && e.type === 'error' && e.body === 'two');
    for (const error of [first, second]) {
      assert.match(error.xml, /remote-server-not-found/);
      assert.match(error.xml, /ECONNREFUSED/);
    }
  });

  it('refuses an inbound stream that claims a domain it did not prove', async () => {
    const raw = rawStream(s2sPort);
    raw.socket.write(
      `<?xml version='1.0'?><stream:stream xmlns="jabber:server" xmlns:stream="http://etherx.jabber.org/streams" xmlns:db="jabber:server:dialback" from="${REMOTE}" to="example.test" version="1.0">`,
    );
    await raw.until(/<\/stream:features>|<stream:features[^>]*\/>/);
    // A stanza before authentication: not-authorized.
    raw.socket.write(`<message from="rob@${REMOTE}/x" to="nobody@example.test"><body>sneaky</body></message>`);
    await raw.until(/<not-authorized xmlns="urn:ietf:params:xml:ns:xmpp-streams"/);

    // A forged dialback key: Prosody (the authoritative server of remote.test) says it is not its own.
    const forged = rawStream(s2sPort);
    forged.socket.write(
      `<?xml version='1.0'?><stream:stream xmlns="jabber:server" xmlns:stream="http://etherx.jabber.org/streams" xmlns:db="jabber:server:dialback" from="${REMOTE}" to="example.test" version="1.0">`,
    );
    await forged.until(/<\/stream:features>|<stream:features[^>]*\/>/);
    forged.socket.write(`<db:result from="${REMOTE}" to="example.test">${'ab'.repeat(32)}</db:result>`);
    const text = await forged.until(/<not-authorized xmlns="urn:ietf:params:xml:ns:xmpp-streams"/, 20_000);
    assert.match(text, /<db:result[^>]*type="invalid"/);
    assert.ok(events.some((e) => e.event === 's2s.verified' && e.remote === REMOTE && e.valid === false), 'Prosody was asked, and said no');
    assert.ok(events.some((e) => e.event === 's2s.failed' && e.direction === 'in' && e.remote === REMOTE));
    // A stream to a domain not served here: host-unknown.
    const stranger = rawStream(s2sPort);
    stranger.socket.write(
      `<?xml version='1.0'?><stream:stream xmlns="jabber:server" xmlns:stream="http://etherx.jabber.org/streams" xmlns:db="jabber:server:dialback" from="${REMOTE}" to="not-here.test" version="1.0">`,
    );
    await stranger.until(/<host-unknown/);
    // The guard of client streams applies: a stanza larger than the limit before authentication ends the stream.
    const big = rawStream(s2sPort);
    big.socket.write(
      `<?xml version='1.0'?><stream:stream xmlns="jabber:server" xmlns:stream="http://etherx.jabber.org/streams" from="${REMOTE}" to="example.test" version="1.0">`,
    );
    await big.until(/<\/stream:features>/);
    // In two writes: the guard must count a stanza across the chunks it arrives in.
    const stanza = `<message><body>${'x'.repeat(server.config.xmpp.preAuthStanzaBytes + 100)}</body></message>`;
    big.socket.write(stanza.slice(0, 6000));
    await new Promise((r) => setTimeout(r, 100));
    big.socket.write(stanza.slice(6000));
    await big.until(/<policy-violation xmlns="urn:ietf:params:xml:ns:xmpp-streams"/);
    for (const r of [raw, forged, stranger, big]) r.socket.destroy();
  });
});

/** A test CA and certificates it signed for `domains` (serverAuth and clientAuth), in a temporary directory. */
function testPki(domains: string[]): { dir: string; ca: string; files: Record<string, { cert: string; key: string }> } {
  const dir = mkdtempSync(join(tmpdir(), 's2s-pki-'));
  const run = (...args: string[]): void => void execFileSync('openssl', args, { stdio: 'ignore' });
  const ca = join(dir, 'ca.pem');
  run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=ximssd test CA', '-keyout', join(dir, 'ca.key'), '-out', ca);
  const files: Record<string, { cert: string; key: string }> = {};
  for (const domain of domains) {
    const key = join(dir, `${domain}.key`);
    const cert = join(dir, `${domain}.pem`);
    const ext = join(dir, `${domain}.ext`);
    writeFileSync(ext, `subjectAltName=DNS:${domain}\nextendedKeyUsage=serverAuth,clientAuth\n`);
    run('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${domain}`, '-keyout', key, '-out', join(dir, `${domain}.csr`));
    run('x509', '-req', '-in', join(dir, `${domain}.csr`), '-CA', ca, '-CAkey', join(dir, 'ca.key'), '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', cert);
    files[domain] = { cert, key };
  }
  return { dir, ca, files };
}

/** Waits until `check` holds (polling), failing with `what` after `ms`. */
async function eventually(check: () => boolean, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not seen in time: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('XMPP federation between two ximssd servers with certificates from a trusted CA', { skip: slixmpp ?? false }, () => {
  const pki = testPki(['example.test', 'other.test', 'third.test']);
  let a: TestServer;
  let b: TestServer;
  const eventsA: Record<string, unknown>[] = [];
  const eventsB: Record<string, unknown>[] = [];
  const ports = { aXmpp: 0, aS2s: 0, bXmpp: 0, bS2s: 0, blackhole: 0 };
  /** Accepts connections and never says anything. */
  const held = new Set<net.Socket>();
  const blackhole = net.createServer((socket) => {
    held.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => held.delete(socket));
  });
  const toClose: XmppPeer[] = [];
  const routes: DnsResolver = async (name, rrtype) => {
    const srv: Record<string, number> = { '_xmpp-server._tcp.example.test': ports.aS2s, '_xmpp-server._tcp.other.test': ports.bS2s, '_xmpp-server._tcp.blackhole.test': ports.blackhole };
    if (rrtype === 'SRV' && srv[name]) return [{ name: '127.0.0.1', port: srv[name], priority: 0, weight: 0 }];
    throw Object.assign(new Error(`queryDNS ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
  };

  before(async () => {
    await new Promise<void>((resolve) => blackhole.listen(0, '127.0.0.1', resolve));
    ports.blackhole = (blackhole.address() as net.AddressInfo).port;
    [ports.aXmpp, ports.aS2s, ports.bXmpp, ports.bS2s] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const s2s = { caFile: pki.ca, idleSeconds: 2, connectSeconds: 2, queueStanzas: 2, connectionsPerAddress: 6, requireTls: true };
    a = await startTestServer(
      { ports: { ximss: 0, http: 0, smtp: 0, xmpp: ports.aXmpp, xmppS2s: ports.aS2s }, tls: { certFile: pki.files['example.test']!.cert, keyFile: pki.files['example.test']!.key }, xmpp: { s2s } },
      { xmppResolver: routes, log: capturingLogger(eventsA) },
    );
    b = await startTestServer(
      { defaultDomain: 'other.test', ports: { ximss: 0, http: 0, smtp: 0, xmpp: ports.bXmpp, xmppS2s: ports.bS2s }, tls: { certFile: pki.files['other.test']!.cert, keyFile: pki.files['other.test']!.key }, xmpp: { s2s } },
      { xmppResolver: routes, log: capturingLogger(eventsB) },
    );
  });

  after(async () => {
    await Promise.all(toClose.map((p) => p.close().catch(() => {})));
    await a?.stop();
    await b?.stop();
    for (const socket of held) socket.destroy();
    await new Promise<void>((resolve) => blackhole.close(() => resolve()));
    rmSync(pki.dir, { recursive: true, force: true });
  });

  async function peerOn(server: TestServer, port: number, domain: string, resource: string): Promise<XmppPeer> {
    const jid = await server.newAccount('fed', { domain });
    const p = await XmppPeer.connect({ jid, password: 'secret', host: '127.0.0.1', port, resource });
    toClose.push(p);
    return p;
  }

  it('authenticate with SASL EXTERNAL both ways, chat, and close idle streams (a new one is made after)', async () => {
    const anna = await peerOn(a, ports.aXmpp, 'example.test', 'desk');
    const bert = await peerOn(b, ports.bXmpp, 'other.test', 'desk');
    await Promise.all([anna.presence(), bert.presence()]);
    const annaJid = anna.jid.split('/')[0]!;
    const bertJid = bert.jid.split('/')[0]!;
    await anna.message({ to: bertJid, body: 'over EXTERNAL' });
    const got = await bert.waitFor((e): e is MessageEvent => e.event === 'message' && e.body === 'over EXTERNAL');
    assert.equal(got.from, anna.jid);
    await bert.message({ to: annaJid, body: 'and back' });
    await anna.waitFor((e): e is MessageEvent => e.event === 'message' && e.body === 'and back');
    const outA = eventsA.find((e) => e.event === 's2s.authenticated' && e.direction === 'out' && e.remote === 'other.test');
    const inB = eventsB.find((e) => e.event === 's2s.authenticated' && e.direction === 'in' && e.remote === 'example.test');
    assert.equal(outA?.mechanism, 'external');
    assert.equal(inB?.mechanism, 'external');
    assert.equal(eventsB.find((e) => e.event === 's2s.authenticated' && e.direction === 'out')?.mechanism, 'external');
    assert.ok(!eventsA.some((e) => e.event === 's2s.verified'), 'no dialback was needed');
    // Idle for idleSeconds: closed; the next message makes a new stream.
    await eventually(() => eventsA.some((e) => e.event === 's2s.closed' && e.direction === 'out' && e.reason === 'idle'), 'the idle stream closed');
    await anna.message({ to: bertJid, body: 'after idle' });
    await bert.waitFor((e): e is MessageEvent => e.event === 'message' && e.body === 'after idle');
    assert.equal(eventsA.filter((e) => e.event === 's2s.authenticated' && e.direction === 'out' && e.remote === 'other.test').length, 2);
  });

  it('a server that never answers: queued stanzas bounce with remote-server-timeout, those beyond the queue at once', async () => {
    const carl = await peerOn(a, ports.aXmpp, 'example.test', 'desk');
    for (const body of ['q1', 'q2', 'q3']) await carl.message({ to: 'x@blackhole.test', body });
    const third = await carl.waitFor((e): e is MessageEvent => e.event === 'message' && e.type === 'error' && e.body === 'q3');
    assert.match(third.xml, /resource-constraint/);
    for (const body of ['q1', 'q2']) {
      const error = await carl.waitFor((e): e is MessageEvent => e.event === 'message' && e.type === 'error' && e.body === body);
      assert.match(error.xml, /remote-server-timeout/);
    }
  });

  it('refuses stanzas whose from is not on the domain the certificate proved (invalid-from)', async () => {
    const raw = rawStream(ports.aS2s);
    const header = (from: string): string =>
      `<?xml version='1.0'?><stream:stream xmlns="jabber:server" xmlns:stream="http://etherx.jabber.org/streams" from="${from}" to="example.test" version="1.0">`;
    raw.socket.write(header('third.test'));
    await raw.until(/<starttls/);
    raw.socket.write('<starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"/>');
    await raw.until(/<proceed/);
    const third = pki.files['third.test']!;
    await raw.startTls({ servername: 'example.test', ca: readFileSync(pki.ca), cert: readFileSync(third.cert), key: readFileSync(third.key) });
    raw.socket.write(header('third.test'));
    await raw.until(/<mechanism>EXTERNAL<\/mechanism>/);
    raw.socket.write(`<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="EXTERNAL">${Buffer.from('third.test').toString('base64')}</auth>`);
    await raw.until(/<success/);
    assert.ok(eventsA.some((e) => e.event === 's2s.authenticated' && e.direction === 'in' && e.remote === 'third.test' && e.mechanism === 'external'));
    raw.socket.write(header('third.test'));
    await raw.until(/<\/stream:features>|<stream:features\/>/);
    raw.socket.write('<message from="mallory@other.test" to="postmaster@example.test"><body>forged</body></message>');
    await raw.until(/<invalid-from xmlns="urn:ietf:params:xml:ns:xmpp-streams"/);
    raw.socket.destroy();
    // A certificate for another domain does not prove this one: EXTERNAL is not even offered.
    const liar = rawStream(ports.aS2s);
    liar.socket.write(header('other.test'));
    await liar.until(/<starttls/);
    liar.socket.write('<starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"/>');
    await liar.until(/<proceed/);
    await liar.startTls({ servername: 'example.test', ca: readFileSync(pki.ca), cert: readFileSync(third.cert), key: readFileSync(third.key) });
    liar.socket.write(header('other.test'));
    const features = await liar.until(/<\/stream:features>/);
    assert.doesNotMatch(features, /EXTERNAL/);
    liar.socket.write(`<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="EXTERNAL">=</auth>`);
    await liar.until(/<failure xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><not-authorized/);
    liar.socket.destroy();
  });

  it('requires STARTTLS when configured: dialback on a plain stream is refused', async () => {
    const raw = rawStream(ports.bS2s);
    raw.socket.write(
      `<?xml version='1.0'?><stream:stream xmlns="jabber:server" xmlns:stream="http://etherx.jabber.org/streams" xmlns:db="jabber:server:dialback" from="example.test" to="other.test" version="1.0">`,
    );
    await raw.until(/<starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"><required\/><\/starttls>/);
    raw.socket.write(`<db:result from="example.test" to="other.test">${'cd'.repeat(32)}</db:result>`);
    await raw.until(/<policy-violation xmlns="urn:ietf:params:xml:ns:xmpp-streams"/);
    raw.socket.destroy();
  });

  it('limits the server streams open from one address', async () => {
    const opened = Array.from({ length: 8 }, () => rawStream(ports.bS2s));
    await eventually(() => eventsB.some((e) => e.event === 's2s.refused'), 'a connection refused beyond connectionsPerAddress');
    for (const r of opened) r.socket.destroy();
  });
});
