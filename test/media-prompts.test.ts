/**
 * Prompts (src/media/prompts.ts): what Rayo's output documents render to, and where a prompt URL
 * may be fetched from (never the server's own network unless the operator allows it).
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { test } from 'node:test';
import { PromptError, PromptRenderer } from '../src/media/prompts.js';
import { TextToSpeech } from '../src/media/tts.js';
import { encodeWav } from '../src/media/wav.js';

const tts = new TextToSpeech();

test('a URL on a loopback, private or link-local address is refused unless allowed', async () => {
  const renderer = new PromptRenderer({ tts });
  for (const url of ['http://127.0.0.1:9/a.wav', 'http://[::1]:9/a.wav', 'http://10.1.2.3/a.wav', 'http://169.254.169.254/latest', 'http://192.168.1.1/a.wav', 'http://localhost:9/a.wav']) {
    await assert.rejects(renderer.render({ kind: 'url', url }), (err: unknown) => err instanceof PromptError && err.kind === 'bad' && /private or local address/.test(err.message), url);
  }
  for (const url of ['file:///etc/passwd', 'ftp://example.com/a.wav', 'not a url']) {
    await assert.rejects(renderer.render({ kind: 'url', url }), PromptError, url);
  }
});

test('allowed, a WAV at any rate is fetched and comes back at 8 kHz; a non-WAV is refused', async () => {
  const samples = new Int16Array(16_000).map((_, i) => Math.round(5000 * Math.sin((2 * Math.PI * 440 * i) / 16_000)));
  const wav = encodeWav(samples, { sampleRate: 16_000 });
  const http = createServer((request, response) => {
    if (request.url === '/a.wav') response.end(wav);
    else response.end('<html>not audio</html>');
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  try {
    const base = `http://127.0.0.1:${(http.address() as { port: number }).port}`;
    const renderer = new PromptRenderer({ tts, fetchPrivate: true });
    const audio = await renderer.render({ kind: 'url', url: `${base}/a.wav` });
    assert.ok(Math.abs(audio.length - 8000) < 200, `1 s at 8 kHz: ${audio.length} samples`);
    await assert.rejects(renderer.render({ kind: 'url', url: `${base}/page` }), (err: unknown) => err instanceof PromptError && /not a WAV/.test(err.message));
    await assert.rejects(renderer.render({ kind: 'inline', contentType: 'audio/mpeg', content: 'x' }), (err: unknown) => err instanceof PromptError && /cannot be played/.test(err.message));
  } finally {
    await new Promise<void>((resolve) => http.close(() => resolve()));
  }
});
