/**
 * The structured log's second line of defence: fields that may carry a secret are redacted at the
 * top of a line and one object down, without touching the caller's objects.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger, redactSecrets } from '../src/log.js';

function capture(): { lines: Record<string, unknown>[]; log: ReturnType<typeof createLogger> } {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level: 'debug', destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) } });
  return { lines, log };
}

test('secret fields are redacted at the top and one object down', () => {
  const { lines, log } = capture();
  const request = { user: 'bob', password: 'hunter2', nested: { token: 't0k' } };
  log.info({ event: 'x', password: 'p', authorization: 'Basic abc', request, count: 3, list: ['password'] }, 'hello');
  const line = lines[0]!;
  assert.equal(line.password, '[redacted]');
  assert.equal(line.authorization, '[redacted]');
  assert.deepEqual(line.request, { user: 'bob', password: '[redacted]', nested: { token: 't0k' } });
  assert.equal(line.count, 3);
  assert.deepEqual(line.list, ['password']);
  assert.equal(line.msg, 'hello');
  // The caller's object is as it was.
  assert.equal(request.password, 'hunter2');
});

test('a child logger redacts too, and lines without secrets pass unchanged', () => {
  const { lines, log } = capture();
  log.child({ component: 'sip' }).warn({ event: 'sip.auth_failed', user: 'bob', key: 'k' }, 'failed');
  assert.equal(lines[0]!.key, '[redacted]');
  assert.equal(lines[0]!.component, 'sip');
  const fields = { event: 'call.started', callId: 'abc' };
  assert.equal(redactSecrets(fields), fields, 'nothing to redact: the same object, no copy');
});

test('an error field keeps its message and stack', () => {
  const { lines, log } = capture();
  log.error({ event: 'boom', err: new Error('it broke') }, 'failed');
  const err = lines[0]!.err as { message: string; stack: string };
  assert.equal(err.message, 'it broke');
  assert.match(err.stack, /it broke/);
});
