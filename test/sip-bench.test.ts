/**
 * The small pure pieces of the `sip` and `media` bench areas (bench/lib/sip-*.ts): the rate
 * search, a trial's verdict, the RTP probe packets, RFC 3550 jitter, duplicates, transit
 * percentiles, the SIPp log lines the media endpoint follows, and merging the two sides'
 * reports. The values are made up here; the jitter case follows RFC 3550 6.4.1's definition.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { judgeTrial, searchRate } from '../bench/lib/sip-bench.js';
import { judgeMedia } from '../bench/lib/sip-media-bench.js';
import { JitterMeter, mergeReports, parseMediaTarget, readProbe, rtpPacket, TransitHistogram, type MediaWindowReport } from '../bench/lib/sip-rtp.js';

describe('sip bench: the rate search', () => {
  const search = async (limit: number, start: number, max: number): Promise<{ found: number; tried: number[] }> => {
    const tried: number[] = [];
    const found = await searchRate(async (rate) => (tried.push(rate), rate <= limit), start, max);
    return { found, tried };
  };

  it('doubles while trials pass, then bisects to within 10%', async () => {
    const { found, tried } = await search(700, 50, 5000);
    assert.deepEqual(tried.slice(0, 6), [50, 100, 200, 400, 800, 600]);
    assert.ok(found <= 700 && found >= 630, `found ${found}`);
  });

  it('stops at the maximum when everything passes; below the start it bisects down, to 0 when nothing passes', async () => {
    assert.equal((await search(10_000, 50, 300)).found, 300);
    assert.deepEqual(await search(10, 50, 300), { found: 10, tried: [50, 25, 13, 7, 10, 12, 11] });
    assert.equal((await search(0, 50, 300)).found, 0);
  });

  it('judges a trial by failures, calls placed and the rate SIPp kept up', () => {
    assert.deepEqual(judgeTrial(100, 500, { created: 500, failed: 4 }, 99), { ok: true });
    assert.equal(judgeTrial(100, 500, { created: 500, failed: 5 }, 99).ok, false);
    assert.match(judgeTrial(100, 500, { created: 480, failed: 0 }, 99).why ?? '', /only 480 of 500/);
    assert.match(judgeTrial(100, 500, { created: 500, failed: 0 }, 80).why ?? '', /placed 80 calls\/s/);
  });
});

describe('media bench: RTP probes and what the receiver makes of them', () => {
  it('carries the stream, index and send time in a 172-byte PCMU packet', () => {
    const packet = rtpPacket({ stream: 7, index: 70_000, sentAt: 1234.5678 }, 0xdeadbeef);
    assert.equal(packet.length, 12 + 160);
    assert.equal(packet[0], 0x80);
    assert.equal(packet[1], 0); // PT 0
    assert.equal(packet.readUInt16BE(2), 70_000 & 0xffff);
    assert.equal(packet.readUInt32BE(4), 70_000 * 160);
    assert.equal(packet.readUInt32BE(8), 0xdeadbeef);
    assert.deepEqual(readProbe(packet), { stream: 7, index: 70_000, sentAt: 1234.5678 });
    assert.equal(readProbe(Buffer.from('not rtp at all, but long enough to be read as such')), undefined);
  });

  it('finds the probe after CSRCs a relay may have added', () => {
    const packet = rtpPacket({ stream: 1, index: 2, sentAt: 3 }, 4);
    const withCsrc = Buffer.concat([packet.subarray(0, 12), Buffer.alloc(8), packet.subarray(12)]);
    withCsrc[0] = 0x82;
    assert.deepEqual(readProbe(withCsrc), { stream: 1, index: 2, sentAt: 3 });
  });

  it('computes RFC 3550 jitter from the change in transit time', () => {
    const steady = new JitterMeter();
    for (let i = 0; i < 50; i++) steady.add(i, i * 20, i * 20 + 1);
    assert.equal(steady.jitter, 0);
    const wobbly = new JitterMeter();
    wobbly.add(0, 0, 1);
    wobbly.add(1, 20, 25); // transit 1 → 5: D = 4, J = 4/16
    assert.equal(wobbly.jitter, 0.25);
    wobbly.add(2, 40, 41); // D = 4 again: J += (4 − 0.25)/16
    assert.equal(wobbly.jitter, 0.25 + 3.75 / 16);
    assert.equal(wobbly.received, 3);
  });

  it('tells duplicates apart, late packets included', () => {
    const m = new JitterMeter();
    assert.equal(m.add(5, 100, 101), true);
    assert.equal(m.add(3, 60, 102), true); // late, first time
    assert.equal(m.add(5, 100, 103), false);
    assert.equal(m.add(3, 60, 104), false);
    assert.equal(m.add(40, 800, 801), true);
    assert.equal(m.add(5, 100, 805), true); // beyond the 32-packet window: counted (rare, harmless)
    assert.equal(m.duplicates, 2);
  });

  it('keeps transit percentiles to 0.1 ms', () => {
    const h = new TransitHistogram();
    for (let i = 1; i <= 100; i++) h.add(i / 10);
    assert.equal(h.count, 100);
    assert.equal(h.percentile(0.99), 9.9);
    assert.equal(h.percentile(0.5), 5);
    assert.ok(Math.abs(h.mean - 5.05) < 1e-9);
  });

  it('reads the SIPp media scenarios\u2019 log lines', () => {
    assert.deepEqual(parseMediaTarget('uac 12 c=IN IP4 127.0.0.1 m=audio 40002'), { side: 'uac', call: 12, host: '127.0.0.1', port: 40002 });
    assert.deepEqual(parseMediaTarget('2026-12-07 10:00:00.000: uas 3 c=IN IP4 10.0.0.9 m=audio 7078 '), { side: 'uas', call: 3, host: '10.0.0.9', port: 7078 });
    assert.equal(parseMediaTarget('uac 12 c=IN IP4 127.0.0.1 m=audio 70000'), undefined);
    assert.equal(parseMediaTarget('uac 12 [$peer_c] [$peer_m]'), undefined);
  });

  it('merges the two sides\u2019 reports', () => {
    const side = (sent: number, received: number, jitter: number, streams: number): MediaWindowReport => ({
      streams,
      sent,
      received,
      loss: 1 - received / sent,
      jitterMeanMs: jitter,
      jitterMaxMs: jitter * 2,
      jitterStreams: streams,
      transitMeanMs: jitter,
      transitP99Ms: jitter * 3,
      duplicates: 1,
      foreign: 0,
      endpointCpu: 0.25,
    });
    const merged = mergeReports(side(1000, 990, 1, 10), side(1000, 1000, 4, 30));
    assert.equal(merged.sent, 2000);
    assert.equal(merged.received, 1990);
    assert.ok(Math.abs(merged.loss - 0.005) < 1e-12);
    assert.equal(merged.jitterMeanMs, (1 * 10 + 4 * 30) / 40);
    assert.equal(merged.jitterMaxMs, 8);
    assert.equal(merged.transitP99Ms, 12);
    assert.equal(merged.duplicates, 2);
    assert.equal(merged.endpointCpu, 0.5);
  });

  it('judges a level by calls up, loss and added jitter', () => {
    const report = { sent: 10_000, loss: 0.005 } as MediaWindowReport;
    assert.deepEqual(judgeMedia(100, 100, report, 4.9), { ok: true });
    assert.match(judgeMedia(100, 99, report, 0).why ?? '', /only 99 of 100/);
    assert.match(judgeMedia(100, 100, { ...report, loss: 0.01 }, 0).why ?? '', /1\.00% of the packets lost/);
    assert.match(judgeMedia(100, 100, report, 5).why ?? '', /above the direct path/);
    assert.doesNotMatch(judgeMedia(100, 100, report, 5, false).why ?? '', /direct/);
  });
});
