// A second reporter beside TAP (package.json "test"): after the whole run it lists the tests
// that failed or were cancelled, with their files and first lines of error, as TAP comments.
// A long CI log is often read from its end only: there it says what went wrong. It prints
// nothing when everything passed.

/** @param {AsyncIterable<{ type: string, data: any }>} source */
export default async function* failures(source) {
  const lines = [];
  for await (const event of source) {
    if (event.type !== 'test:fail') continue;
    const { name, file, details } = event.data;
    const error = details?.error;
    // A suite that failed because a test in it did is already named by that test.
    if (error?.failureType === 'subtestsFailed') continue;
    const kind = error?.failureType === 'cancelledByParent' || error?.failureType === 'testTimeoutFailure' ? 'cancelled' : 'failed';
    const cause = error?.cause;
    const message = cause ? String(cause.stack ?? cause.message ?? cause).split('\n').slice(0, 6) : [];
    lines.push(`# ${kind}: ${name} (${file ?? 'unknown file'})`, `#   ${error?.failureType ?? 'error'}: ${error?.message ?? String(error)}`, ...message.map((line) => `#   ${line}`));
  }
  if (lines.length > 0) yield `# what failed or was cancelled:\n${lines.join('\n')}\n`;
}
