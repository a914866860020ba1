/**
 * The baresip fixture (test/fixtures/baresip.ts) proven on its own, before the call tests
 * point it at ximssd: two baresip phones on loopback call each other directly (no server),
 * each playing a DTMF digit's tones as its audio, and each must have recorded the other's
 * digit, in plain RTP and in DTLS-SRTP over ICE (as WebRTC peers send it); a small fake
 * registrar in this file shows that an account registers (with digest authentication, over
 * UDP or TCP) and that a refused registration is reported. The pure parts (netstrings,
 * account lines, event waits, WAV tones and their detection) are tested without baresip.
 * Skipped only when baresip cannot be installed, with the reason.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { Baresip, BaresipEvents, accountLine, configText, encodeNetstring, ensureBaresip, parseNetstrings } from './fixtures/baresip.js';
import { decodeWav, dtmfBlockCounts, dtmfDigits, dtmfSamples, encodeWav, loopSamples, readWav, toneSamples, writeWav } from './fixtures/wav.js';

describe('baresip fixture: the parts without baresip', () => {
  it('frames ctrl_tcp messages as netstrings, and reads them back across chunk boundaries', () => {
    const framed = Buffer.concat([encodeNetstring('{"a":1}'), encodeNetstring('é'), encodeNetstring('')]);
    assert.equal(framed.toString('utf8'), '7:{"a":1},2:é,0:,');
    const first = parseNetstrings(framed.subarray(0, 12));
    assert.deepEqual(first.messages, ['{"a":1}']);
    const second = parseNetstrings(Buffer.concat([first.rest, framed.subarray(12)]));
    assert.deepEqual(second.messages, ['é', '']);
    assert.equal(second.rest.length, 0);
    assert.deepEqual(parseNetstrings(Buffer.from('12')).messages, []); // a length still arriving
    assert.throws(() => parseNetstrings(Buffer.from('3:abc;')), /comma/);
    assert.throws(() => parseNetstrings(Buffer.from('x:')), /length/);
  });

  it('writes the account line: a local UA that never registers, or an account through its registrar', () => {
    assert.equal(
      accountLine({ user: 'bob' }),
      '<sip:bob@127.0.0.1>;regint=0;answermode=manual;audio_codecs=PCMU/8000/1,PCMA/8000/1;ptime=20;mwi=no',
    );
    assert.equal(
      accountLine({
        account: { user: 'alice', password: 'pw1', domain: 'example.test', registrar: '127.0.0.1:5070', transport: 'tcp', registerSeconds: 60 },
        codecs: ['PCMA'],
        mediaEncryption: 'dtls_srtp',
      }),
      '<sip:alice@example.test;transport=tcp>;auth_pass=pw1;outbound="sip:127.0.0.1:5070;transport=tcp";regint=60;' +
        'answermode=manual;audio_codecs=PCMA/8000/1;ptime=20;mwi=no;mediaenc=dtls_srtp',
    );
    assert.throws(() => accountLine({ account: { user: 'a', password: 'x;y', domain: 'd', registrar: 'h:1' } }), /unusable password/);
    assert.throws(() => accountLine({ account: { user: 'a', domain: 'd', registrar: 'h' } }), /host:port/);
  });

  it('configures loopback SIP, the WAV source, the recorder and ctrl_tcp, with no sound card or video', () => {
    const config = configText({ sipPort: 5070, ctrlPort: 4444, audioIn: '/t/in.wav', recordDir: '/t/rec', modules: ['g711', 'aufile', 'sndfile'] });
    for (const line of ['sip_listen\t\t127.0.0.1:5070', 'audio_source\t\taufile,/t/in.wav', 'snd_path\t\t/t/rec', 'ctrl_tcp_listen\t\t127.0.0.1:4444', 'module\t\t\tg711.so']) {
      assert.ok(config.split('\n').includes(line), line);
    }
    assert.doesNotMatch(config, /alsa|video|opus/);
  });

  it('waits for events from a given position, and fails at once, with the log, when no more can come', async () => {
    const events = new BaresipEvents(() => 'LOG TAIL');
    events.push({ type: 'CALL_CLOSED', param: 'first call' });
    const mark = events.count;
    const later = events.waitFor((e) => e.type === 'CALL_CLOSED', 1000, mark);
    events.push({ type: 'CALL_INCOMING' });
    events.push({ type: 'CALL_CLOSED', param: 'second call' });
    assert.equal((await later).param, 'second call');
    assert.equal((await events.waitFor((e) => e.type === 'CALL_CLOSED')).param, 'first call'); // from 0: the history counts
    const pending = events.waitFor((e) => e.type === 'REGISTER_OK', 60_000, 0, 'registration');
    const started = Date.now();
    events.end('baresip exited (1)');
    await assert.rejects(pending, /^Error: registration: no more events \(baresip exited \(1\)\); events seen: CALL_CLOSED\(first call\) CALL_INCOMING CALL_CLOSED\(second call\)\nLOG TAIL$/);
    assert.ok(Date.now() - started < 1000);
  });

  it('makes DTMF tones that the detector finds, through a WAV file and back', () => {
    const press = new Int16Array([...dtmfSamples('5', 0.2), ...new Int16Array(800), ...dtmfSamples('#', 0.2), ...new Int16Array(800), ...dtmfSamples('5', 0.2)]);
    const audio = decodeWav(encodeWav(press));
    assert.deepEqual({ rate: audio.sampleRate, channels: audio.channels, complete: audio.complete }, { rate: 8000, channels: 1, complete: true });
    assert.deepEqual(audio.samples, press);
    assert.equal(dtmfDigits(audio.samples), '5#5');
    assert.deepEqual([...dtmfBlockCounts(toneSamples([1000], 1))], []); // a pure tone is no digit
    assert.throws(() => dtmfSamples('x', 1), /not a DTMF digit/);
  });

  it('reads a WAV whose writer has not finished it (lengths still zero) up to the end of the file', () => {
    const wav = encodeWav(dtmfSamples('1', 0.1));
    wav.writeUInt32LE(36, 4);
    wav.writeUInt32LE(0, 40);
    const audio = decodeWav(wav);
    assert.equal(audio.complete, false);
    assert.equal(audio.samples.length, 800);
  });

  it('repeats audio to the length asked for', () => {
    assert.deepEqual([...loopSamples(new Int16Array([1, 2, 3]), 8 / 8000)], [1, 2, 3, 1, 2, 3, 1, 2]);
    assert.equal(loopSamples(new Int16Array(10), 0).length, 10); // never shorter than once
  });
});

const availability = await ensureBaresip();
const skip = availability.available ? false : availability.reason;

/** How many Goertzel blocks (25.6 ms) make a second. */
const BLOCKS_PER_SECOND = 8000 / 205;

describe('two baresip phones calling each other directly', { skip }, () => {
  let dir: string;
  let a: Baresip;
  let b: Baresip;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'baresip-fixture-'));
    // Two seconds of each digit: the fixture repeats it for as long as the call lasts.
    const five = writeWav(join(dir, 'five.wav'), dtmfSamples('5', 2));
    const nine = writeWav(join(dir, 'nine.wav'), dtmfSamples('9', 2));
    [a, b] = await Promise.all([
      Baresip.start({ name: 'a', user: 'a', audioIn: five, recordTo: join(dir, 'a-heard.wav') }),
      Baresip.start({ name: 'b', user: 'b', audioIn: nine, recordTo: join(dir, 'b-heard.wav') }),
    ]);
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('A calls B, B answers, RFC 4733 digits pass, and each records the digit the other plays', async () => {
    await a.dial(b.directUri);
    const incoming = await b.waitForEvent('CALL_INCOMING');
    assert.equal(incoming.direction, 'incoming');
    assert.match(incoming.peeruri ?? '', /^sip:a@127\.0\.0\.1/);
    await b.answer();
    const [establishedA, establishedB] = await Promise.all([a.waitForEvent('CALL_ESTABLISHED'), b.waitForEvent('CALL_ESTABLISHED')]);
    assert.equal(establishedA.direction, 'outgoing');
    assert.equal(establishedA.id, establishedB.id); // the same dialog (its Call-ID)

    await a.sendDtmf('7');
    assert.equal((await b.waitForEvent('CALL_DTMF_START')).param, '7');

    await sleep(3000);
    const closedFrom = b.events.count;
    await b.hangup();
    await Promise.all([a.waitForEvent('CALL_CLOSED'), b.waitForEvent('CALL_CLOSED', 10_000, closedFrom)]);

    const heardByB = readWav(await b.recording());
    const heardByA = readWav(await a.recording());
    assert.equal(heardByB.sampleRate, 8000);
    const countsB = dtmfBlockCounts(heardByB.samples);
    const countsA = dtmfBlockCounts(heardByA.samples);
    // Three seconds of call: at least two seconds' worth of blocks must carry the other's digit, and none our own.
    assert.ok((countsB.get('5') ?? 0) > 2 * BLOCKS_PER_SECOND, `B heard ${JSON.stringify([...countsB])}`);
    assert.ok((countsA.get('9') ?? 0) > 2 * BLOCKS_PER_SECOND, `A heard ${JSON.stringify([...countsA])}`);
    assert.equal(countsB.get('9'), undefined);
    assert.equal(countsA.get('5'), undefined);
  });

  it('a wait that times out says what it waited for, what came, and how the log of baresip ends', async () => {
    await assert.rejects(a.waitForEvent('REGISTER_OK', 200), (err: Error) => {
      assert.match(err.message, /waiting for REGISTER_OK: timed out after 200 ms; events seen: .*CALL_CLOSED/);
      assert.match(err.message, /last lines of baresip a's log ---\n/);
      return true;
    });
  });

  it('a command baresip does not know is rejected with its answer', async () => {
    await assert.rejects(a.command('no-such-command'), /"no-such-command" failed/);
  });
});

describe('two baresip phones with DTLS-SRTP and ICE, as WebRTC peers use', { skip }, () => {
  let dir: string;
  let a: Baresip;
  let b: Baresip;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'baresip-fixture-'));
    const webrtcLike = { mediaEncryption: 'dtls_srtp', mediaNat: 'ice' } as const;
    [a, b] = await Promise.all([
      Baresip.start({ name: 'a', user: 'a', audioIn: writeWav(join(dir, 'star.wav'), dtmfSamples('*', 2)), ...webrtcLike }),
      Baresip.start({ name: 'b', user: 'b', audioIn: writeWav(join(dir, 'zero.wav'), dtmfSamples('0', 2)), ...webrtcLike }),
    ]);
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('negotiates SRTP keys over DTLS and carries the audio both ways', async () => {
    await a.dial(b.directUri);
    await b.waitForEvent('CALL_INCOMING');
    await b.answer();
    // CALL_MENC reports the secured stream ("0,audio,RTP": no error, the audio's RTP is keyed).
    const [secured] = await Promise.all([b.events.waitFor((e) => e.type === 'CALL_MENC' && /audio,RTP$/.test(e.param ?? '')), a.waitForEvent('CALL_ESTABLISHED')]);
    assert.match(secured.param ?? '', /^0,/);
    await sleep(2500);
    await a.hangup();
    await b.waitForEvent('CALL_CLOSED');
    const heardByB = dtmfBlockCounts(readWav(await b.recording()).samples);
    const heardByA = dtmfBlockCounts(readWav(await a.recording()).samples);
    assert.ok((heardByB.get('*') ?? 0) > BLOCKS_PER_SECOND, `B heard ${JSON.stringify([...heardByB])}`);
    assert.ok((heardByA.get('0') ?? 0) > BLOCKS_PER_SECOND, `A heard ${JSON.stringify([...heardByA])}`);
  });
});

/**
 * A registrar of a few lines, on UDP and TCP at one port: challenges each REGISTER without
 * credentials (401, digest MD5 as RFC 2617 describes it), checks the answer against
 * `passwords`, and answers 200 with the binding, or 403. Enough to see baresip register;
 * nothing is stored. Each REGISTER is kept with the transport it came over.
 */
async function fakeRegistrar(realm: string, passwords: Readonly<Record<string, string>>): Promise<{
  port: number;
  registers: { transport: 'udp' | 'tcp'; text: string }[];
  close(): void;
}> {
  const registers: { transport: 'udp' | 'tcp'; text: string }[] = [];
  const nonce = randomBytes(8).toString('hex');
  const md5 = (s: string): string => createHash('md5').update(s).digest('hex');
  const respond = (request: string, transport: 'udp' | 'tcp', from: string): string | undefined => {
    if (!request.startsWith('REGISTER ')) return undefined;
    registers.push({ transport, text: request });
    const header = (name: string): string[] =>
      request.split('\r\n').filter((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`)).map((l) => l.slice(name.length + 1).trim());
    const authorization = header('Authorization')[0];
    let status = '401 Unauthorized';
    const extra: string[] = [`WWW-Authenticate: Digest realm="${realm}", nonce="${nonce}", algorithm=MD5`];
    if (authorization) {
      const field = (name: string): string => authorization.match(new RegExp(`${name}="?([^",]*)"?`))?.[1] ?? '';
      const user = field('username');
      const password = passwords[user];
      const expected = password === undefined ? '' : md5(`${md5(`${user}:${realm}:${password}`)}:${nonce}:${md5(`REGISTER:${field('uri')}`)}`);
      status = expected !== '' && field('response') === expected ? '200 OK' : '403 Forbidden';
      extra.length = 0;
      if (status === '200 OK') extra.push(`Contact: ${header('Contact')[0]};expires=60`);
    }
    const to = header('To')[0]!;
    return [
      `SIP/2.0 ${status}`,
      ...header('Via').map((v) => `Via: ${v};received=${from}`),
      `From: ${header('From')[0]}`,
      `To: ${to.includes(';tag=') ? to : `${to};tag=${nonce}`}`,
      `Call-ID: ${header('Call-ID')[0]}`,
      `CSeq: ${header('CSeq')[0]}`,
      ...extra,
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
  };
  const tcp = net.createServer((connection) => {
    let buffered = '';
    connection.on('data', (chunk) => {
      buffered += chunk.toString('utf8');
      // A REGISTER has no body: each message ends at its blank line (keep-alive CRLFs are skipped).
      for (let end = buffered.indexOf('\r\n\r\n'); end >= 0; end = buffered.indexOf('\r\n\r\n')) {
        const request = buffered.slice(0, end + 4).replace(/^(\r\n)+/, '');
        buffered = buffered.slice(end + 4);
        const response = respond(request, 'tcp', connection.remoteAddress ?? '127.0.0.1');
        if (response) connection.write(response);
      }
    });
    connection.on('error', () => connection.destroy());
  });
  await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
  const port = (tcp.address() as net.AddressInfo).port;
  const udp = dgram.createSocket('udp4');
  udp.on('message', (data, peer) => {
    const response = respond(data.toString('utf8'), 'udp', peer.address);
    if (response) udp.send(response, peer.port, peer.address);
  });
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(port, '127.0.0.1', resolve);
  });
  return {
    port,
    registers,
    close: () => {
      udp.close();
      tcp.close();
    },
  };
}

describe('a baresip account on a registrar', { skip }, () => {
  let dir: string;
  let registrar: Awaited<ReturnType<typeof fakeRegistrar>>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'baresip-fixture-'));
    registrar = await fakeRegistrar('example.test', { alice: 'alice-pw' });
  });

  after(() => {
    registrar?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('registers with digest authentication through the registrar given', async () => {
    const audioIn = writeWav(join(dir, 'one.wav'), dtmfSamples('1', 1));
    const alice = await Baresip.start({
      audioIn,
      account: { user: 'alice', password: 'alice-pw', domain: 'example.test', registrar: `127.0.0.1:${registrar.port}` },
    });
    try {
      const ok = await alice.registered();
      assert.equal(ok.accountaor, 'sip:alice@example.test');
      const mine = registrar.registers.filter((r) => r.transport === 'udp');
      assert.match(mine[0]!.text, /^REGISTER sip:example\.test SIP\/2\.0\r\n/);
      assert.match(mine.at(-1)!.text, /\r\nAuthorization: Digest username="alice"/);
    } finally {
      await alice.stop();
    }
  });

  it('registers over TCP when asked to', async () => {
    const audioIn = writeWav(join(dir, 'three.wav'), dtmfSamples('3', 1));
    const alice = await Baresip.start({
      audioIn,
      account: { user: 'alice', password: 'alice-pw', domain: 'example.test', registrar: `127.0.0.1:${registrar.port}`, transport: 'tcp' },
    });
    try {
      await alice.registered();
      const overTcp = registrar.registers.filter((r) => r.transport === 'tcp');
      assert.match(overTcp[0]!.text, /^REGISTER sip:example\.test;transport=tcp SIP\/2\.0\r\nVia: SIP\/2\.0\/TCP /);
      assert.match(overTcp.at(-1)!.text, /\r\nAuthorization: Digest username="alice"/);
    } finally {
      await alice.stop();
    }
  });

  it('reports a refused registration at once, with the reason', async () => {
    const audioIn = writeWav(join(dir, 'two.wav'), dtmfSamples('2', 1));
    const mallory = await Baresip.start({
      audioIn,
      account: { user: 'alice', password: 'wrong', domain: 'example.test', registrar: `127.0.0.1:${registrar.port}` },
    });
    try {
      await assert.rejects(mallory.registered(5000), /registration failed: 403 Forbidden/);
    } finally {
      await mallory.stop();
    }
  });
});
