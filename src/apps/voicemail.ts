/**
 * Voicemail, a real-time application shipped with the server (src/services/apps/api.ts).
 *
 * A call that reaches it (a Signal Rule of the account: `if Pending Time > 20 then Redirect to
 * #voicemail`, or a route with `"program": "voicemail"`) is answered with a greeting, the caller
 * speaks after the beep (at most two minutes; `#`, or three seconds of silence, ends it), and the
 * message arrives in the account's INBOX — through its Mail Rules, like any mail — as a mail
 * from the caller with the recording attached as a WAV file (8 kHz, 16-bit), which clients play
 * from the message's MIME URL.
 *
 * The greeting is spoken by text-to-speech, with the account's name; a key pressed during it
 * skips to the beep.
 */
import type { Application, Task } from '../services/apps/api.js';

/** The longest message, seconds, and the silence that ends one. */
const MAX_SECONDS = 120;
const SILENCE_SECONDS = 3;

function greetingOf(task: Task): string {
  return `${task.account.name} cannot take your call. Please leave a message after the tone, and press the pound key when you are done.`;
}

/** The caller as a mail address: a SIP or tel URI becomes its user part at its host. */
function callerAddress(address: string): string {
  const bare = address.replace(/^(sips?|tel):/i, '').split(/[;?>]/)[0]!.replace(/^</, '');
  return /^[^@\s]+@[^@\s]+$/.test(bare) ? bare : `${bare.replace(/[^A-Za-z0-9+._-]/g, '') || 'unknown'}@invalid`;
}

const voicemail: Application = {
  entries: {
    /** A call: greeting, beep, recording, a mail to INBOX. */
    async call(task) {
      const call = task.call;
      if (!call) return;
      // A caller who hung up before the answer leaves nothing to record.
      if (!(await call.answer())) return;
      // Without the greeting (text-to-speech busy or missing), the beep alone invites the message.
      await call.play({ text: greetingOf(task) }, { bargeIn: true }).catch((err: unknown) => task.log.warn('the greeting could not be played', { error: err instanceof Error ? err.message : String(err) }));
      if (call.state !== 'connected') return;
      const recording = await call.record({ maxSeconds: MAX_SECONDS, finalSilenceSeconds: SILENCE_SECONDS, initialSilenceSeconds: 10, beep: true, stopKeys: '#' });
      // A caller who hung up at once, or said nothing at all, leaves no message.
      if (recording.seconds >= 1 && recording.speech) {
        const from = callerAddress(call.from.address);
        const name = call.from.name?.replace(/["\\\r\n]/g, '') ?? '';
        const when = new Date();
        const seconds = Math.round(recording.seconds);
        await task.deliverMail({
          from: name === '' ? from : `"${name}" <${from}>`,
          subject: `Voice message from ${name === '' ? from : name} (${seconds} s)`,
          text: `${name === '' ? from : `${name} <${from}>`} left you a voice message of ${seconds} seconds on ${when.toUTCString()}.\r\nThe recording is attached.\r\n`,
          attachments: [{ filename: `voicemail-${when.toISOString().replace(/[:.]/g, '-')}.wav`, contentType: 'audio/wav', content: recording.wav }],
          headers: { 'X-Voicemail-Caller': call.from.address.slice(0, 200), 'X-Voicemail-Seconds': String(seconds) },
        });
        task.log.info('a voice message was delivered', { caller: from, seconds });
      }
      if (call.state === 'connected') {
        await call.play({ text: recording.speech ? 'Thank you. Goodbye.' : 'No message was recorded. Goodbye.' });
        call.hangup();
      }
    },
  },
};

export default voicemail;
