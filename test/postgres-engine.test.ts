/**
 * The wire-level suites of mail, the queue, SMTP, rules and datasets, run again with every
 * test server on PostgreSQL (XIMSSD_TEST_STORE=postgres, see helpers.ts): the services and
 * protocols behave the same on both engines. Each suite runs in a child process of its own,
 * as `node --test` runs it; a failing test is named here. Any other suite runs on PostgreSQL
 * the same way: `XIMSSD_TEST_STORE=postgres node --import tsx --test test/<suite>.test.ts`.
 */
import assert from 'node:assert/strict';
import { run } from 'node:test';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const SUITES = ['mail', 'mail-http', 'queue', 'smtp', 'rules', 'datasets', 'service'];

test('the mail, queue, SMTP, rules, datasets and service suites pass with the store on PostgreSQL', { timeout: 15 * 60_000 }, async () => {
  process.env.XIMSSD_TEST_STORE = 'postgres';
  // The children report to this run, not to the `node --test` that runs this file.
  delete process.env.NODE_TEST_CONTEXT;
  const files = SUITES.map((name) => fileURLToPath(new URL(`./${name}.test.ts`, import.meta.url)));
  const failed: string[] = [];
  let passed = 0;
  for await (const event of run({ files, concurrency: 1 })) {
    if (event.type === 'test:pass' && event.data.details.type !== 'suite') passed++;
    if (event.type === 'test:fail' && event.data.details.type !== 'suite') {
      const error = event.data.details.error as Error & { cause?: unknown };
      failed.push(`${event.data.file ?? ''}: ${event.data.name}: ${String(error.cause ?? error.message)}`);
    }
  }
  assert.deepEqual(failed, [], `${failed.length} failed on PostgreSQL`);
  assert.ok(passed > 100, `only ${passed} tests ran`);
});
